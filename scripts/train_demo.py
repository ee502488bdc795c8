#!/usr/bin/env python
"""Train the bundled demo model from scratch on the synthetic talking-face set (configs/demo.py).

  python scripts/train_demo.py                                   # → assets/demo (≈ 47 min of steps on a 2-core CPU)
  python scripts/train_demo.py --workdir /tmp/demo --out mydemo

Every step is one of the project's ordinary commands, run in this process in order; each step's
output lands in ``--workdir`` and a finished step is skipped when the script is run again:

  1. synthetic  scripts/make_synthetic.py --size 64 --seconds 6          mp4 + wav talking faces
  2. init       ReadPipeline.from_config(demo.py).save_pretrained(ckpt)   every part with fresh weights
                (the Whisper encoder stays random: there is no pretrained one this small)
  3. frames     read_jax.data.preprocess.write_frame_shards               64² videos for the VAE
  4. vae_image  scripts/train.py --config demo_vae.py:image               L1 + KL on single frames (warm-up)
     vae        scripts/train.py --config demo_vae.py                     then 17-frame windows, from the warm-up
                                                                          inflated for video (both skipped with
                --vae DIR: a VAE trained elsewhere, e.g. by scripts/train_demo_vae.py on a GPU — the bundled model's VAE)
  5. vae.ckpt   vae_stage.latent_stats + export_vae                       ckpt/vae, latents normalised
  6. speech     scripts/extract_speech.py *.wav --whisper ckpt/whisper    stage-1 data
  7. speechae   scripts/train.py --config demo_speechae.py                stage 1
  8. sae.ckpt   scripts/convert.py import-run --speech 'speech/train-*'   ckpt/speech_ae, latents standardised
  9. clips      scripts/preprocess.py --ckpt ckpt --resolution 64         stage-2 data (VAE latents + Whisper)
 10. a2v_dit    scripts/train.py --config demo_a2v_dit.py --config.init_checkpoint=ckpt   stage 2 (SpeechAE frozen)
 11. dit.ckpt   scripts/convert.py import-run                             ckpt/a2v_dit (+ ckpt/speech_ae, unchanged)
 12. assets     ckpt → --out, with a reference portrait and a speech clip from the held-out test seeds

``--smoke`` runs the same steps at a few-step, few-clip size (the end-to-end test).
"""

import argparse
import dataclasses
import glob
import importlib.util
import json
import os
import shutil
import sys
import time

_SCRIPTS = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_SCRIPTS)
DEMO_CLIP_SECONDS = 6.0  # synthetic clip length: 150 frames, two 57-frame training clips and then some


def _script(name):
  """scripts/<name>.py as a module (their ``main(argv)`` is the command line)."""
  spec = importlib.util.spec_from_file_location(f"_demo_script_{name}", os.path.join(_SCRIPTS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # so worker processes can find its functions by name
  spec.loader.exec_module(module)
  return module


class Steps:
  """Runs named steps once: ``<workdir>/done.json`` records the finished ones and their wall time."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "done.json")
    self.done = json.load(open(self.path)) if os.path.isfile(self.path) else {}

  def __call__(self, name: str, fn) -> None:
    if name in self.done:
      print(f"[train_demo] {name}: done earlier ({self.done[name]:.0f} s)", flush=True)
      return
    print(f"[train_demo] {name} ...", flush=True)
    t0 = time.perf_counter()
    fn()
    self.done[name] = time.perf_counter() - t0
    with open(self.path + ".tmp", "w") as fh:
      json.dump(self.done, fh, indent=1)
    os.replace(self.path + ".tmp", self.path)
    print(f"[train_demo] {name}: {self.done[name]:.0f} s", flush=True)


def write_inputs(out_dir: str, size: int, seconds: float, seed_index: int = 0) -> None:
  """reference.png (a frame of a held-out identity, mouth closed) and speech.wav (another held-out
  clip of the same identity) in ``out_dir``: the inputs ``scripts/sample.py`` uses by default."""
  import numpy as np
  from PIL import Image

  from read_jax import media
  from read_jax.data import synthetic
  seed = synthetic.split_seeds("test", seed_index + 1)[seed_index]
  identity = synthetic.make_identity(seed)
  Image.fromarray(synthetic.render_face(identity, mouth_open=0.0, size=size)).save(os.path.join(out_dir, "reference.png"))
  clip = synthetic.make_clip(seed, seconds, size)
  media.write_wav(os.path.join(out_dir, "speech.wav"), np.asarray(clip.audio, np.float32), synthetic.SAMPLE_RATE)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", default="demo_run", help="data, runs and logs (reruns resume here)")
  parser.add_argument("--out", default=os.path.join(_ROOT, "assets", "demo"), help="final checkpoint directory")
  parser.add_argument("--num", type=int, default=240, help="synthetic training videos")
  parser.add_argument("--vae", default="", help="a trained demo VAE directory (scripts/train_demo_vae.py, e.g. run on a "
                      "GPU) to use instead of training one here")
  parser.add_argument("--dit-steps", type=int, default=0,
                      help="stage-2 steps (0: configs/demo_a2v_dit.py's; the bundled model: 20000)")
  parser.add_argument("--smoke", action="store_true", help="a few steps of everything (tests)")
  args = parser.parse_args(argv)
  if args.num < 2:
    parser.error(f"--num must be >= 2, got {args.num}")
  if args.dit_steps < 0:
    parser.error(f"--dit-steps must be >= 0, got {args.dit_steps}")

  import jax

  from read_jax.config import load_config
  from read_jax.convert import checkpoint_dir, export_vae, load_vae
  from read_jax.data import preprocess, records
  from read_jax.files import write_json
  from read_jax.pipeline import PIPELINE_CONFIG, PipelineConfig, ReadPipeline
  from read_jax.train import train
  from read_jax.train import vae_stage

  wd = os.path.abspath(args.workdir)
  os.makedirs(wd, exist_ok=True)
  path = lambda *p: os.path.join(wd, *p)  # noqa: E731
  ckpt = path("ckpt")

  demo = load_config("demo.py")
  res = demo.pipeline.resolution
  clip_video_frames = 1 + 8 * demo.pipeline.clip_frames - 8  # 1 + 8(f − 1): 57
  step = Steps(wd)
  val_fraction = 0.0 if args.smoke else 0.05  # --smoke: too few videos to hold any out (validates on train)

  step("synthetic", lambda: _script("make_synthetic").main(
      ["--out", path("synthetic"), "--num", str(args.num), "--seconds", str(DEMO_CLIP_SECONDS), "--size", str(res),
       "--workers", "2"]))
  step("init", lambda: ReadPipeline.from_config(jax.random.key(0), demo).save_pretrained(ckpt))

  def frames():
    videos = preprocess.list_videos([path("synthetic")])
    counts = preprocess.write_frame_shards(videos, path("frames"), resolution=res, val_fraction=val_fraction)
    print(f"[train_demo] frames: {counts}")
  step("frames", frames)

  def train_stage(config_name, run, data, *overrides):
    train_glob, val_glob = path(data, "train-*"), path(data, "val-*")
    name, _, arg = config_name.partition(":")
    arg = ",".join(filter(None, [arg, "smoke" if args.smoke else ""]))
    config = load_config(f"{name}:{arg}", [f"--config.data.train_glob={train_glob}",
                                           f"--config.data.val_glob={val_glob}", *overrides])
    held_out = len(records.read_source(glob.glob(val_glob))) if glob.glob(val_glob) else 0
    if held_out < config.data.batch_size:  # few videos (--smoke): the hash split holds out too few
      print(f"[train_demo] {run}: {held_out} held-out examples in {data}/, validating on the training shards")
      config.data.val_glob = train_glob
    history = train(config, path(run), devices=jax.devices()[:1])  # toy batches: one device is plenty
    if history["step"] < config.train.steps:  # stopped by a signal: rerun the script to resume
      sys.exit(f"[train_demo] {run} stopped at step {history['step']} of {config.train.steps}; rerun to resume")

  if not args.vae:
    step("vae_image", lambda: train_stage("demo_vae.py:image", "vae_image", "frames"))
    step("vae", lambda: train_stage("demo_vae.py", "vae", "frames", f"--config.init_checkpoint={path('vae_image')}",
                                      "--config.init_from_image=True"))

  def vae_ckpt():
    if args.vae:
      model, variables = load_vae(args.vae)
      params = variables["params"]
    else:
      stage, params = checkpoint_dir.run_params(path("vae"))
      model = stage.model
    frames = records.read_source(records.expand_paths(path("frames", "train-*")))
    stats = vae_stage.latent_stats(model, params, (frames[i]["video"] for i in range(len(frames))))
    export_vae(model, {"params": params, "buffers": stats}, os.path.join(ckpt, "vae"))
  step("vae.ckpt", vae_ckpt)

  step("speech", lambda: _script("extract_speech").main(
      sorted(glob.glob(path("synthetic", "*.wav"))) + ["--whisper", os.path.join(ckpt, "whisper"), "--out", path("speech"),
       "--min_frames", str(clip_video_frames), "--val_fraction", str(val_fraction)]))
  step("speechae", lambda: train_stage("demo_speechae.py", "speechae", "speech"))
  step("sae.ckpt", lambda: checkpoint_dir.import_run(path("speechae"), ckpt, speech_glob=path("speech", "train-*")))
  step("clips", lambda: _script("preprocess").main(
      [path("synthetic"), "--out", path("clips"), "--ckpt", ckpt, "--resolution", str(res), "--clip_frames",
       str(clip_video_frames), "--stride", "16", "--no_detector", "--val_fraction", str(val_fraction)]))
  dit_steps = [f"--config.train.steps={args.dit_steps}"] if args.dit_steps else []
  step("a2v_dit", lambda: train_stage("demo_a2v_dit.py", "a2v_dit", "clips", f"--config.init_checkpoint={ckpt}",
                                      *dit_steps))
  step("dit.ckpt", lambda: checkpoint_dir.import_run(path("a2v_dit"), ckpt))

  def assets():
    checkpoint_dir.check_complete(ckpt)
    tmp = args.out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(ckpt, tmp)
    # The generation settings of configs/demo.py as they are now (the init step may predate a change).
    write_json(os.path.join(tmp, PIPELINE_CONFIG), dataclasses.asdict(PipelineConfig(**demo.pipeline)))
    write_inputs(tmp, res, 3.0 if args.smoke else 4.0)
    shutil.copyfile(path("done.json"), os.path.join(tmp, "train_times.json"))
    if os.path.isdir(args.out):
      shutil.rmtree(args.out)
    os.replace(tmp, args.out)
  step("assets", assets)
  total = sum(step.done.values())
  print(f"[train_demo] demo model in {args.out} ({total / 60:.1f} min of steps)")


if __name__ == "__main__":
  main()
