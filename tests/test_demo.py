"""The whole demo path at reduced size: train every part a few steps (read_jax.demo.build, scripts/train_demo.py
--smoke), write a checkpoint with its inputs, generate from it with scripts/sample.py's defaults, and score it
(read_jax.eval.demo, read_jax.eval.probes)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from read_jax import media
from read_jax.convert import checkpoint_dir
from read_jax.data.preprocess import iter_frames
from read_jax.demo import build
from read_jax.eval import demo as eval_demo
from read_jax.eval import probes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  """One smoke build with the distillation steps: every stage, at configs/demo.py:tiny's sizes."""
  work = tmp_path_factory.mktemp("demo")
  out = str(work / "model")
  build.build(str(work / "run"), out, num=3, smoke=True, distill=True)
  return work, out


@pytest.mark.slow
def test_train_demo_writes_a_complete_checkpoint(demo):
  work, out = demo
  checkpoint_dir.check_complete(out)
  for name in ("reference.png", "speech.wav", "pipeline.json", "train_times.json"):
    assert os.path.isfile(os.path.join(out, name)), name
  done = list(json.load(open(os.path.join(work, "run", "done.json"))))
  assert done[:done.index("assets") + 1] == [
    "synthetic", "init", "frames", "vae_image", "vae", "vae.ckpt", "speech", "speechae", "sae.ckpt", "clips",
    "a2v_dit", "dit.ckpt", "a2v_rolling", "rolling.ckpt", "assets"]
  # Every training stage ran its steps and the latents were normalised with measured statistics.
  for run in ("vae_image", "vae", "speechae", "a2v_dit", "a2v_rolling"):
    steps = [json.loads(line)["step"] for line in open(os.path.join(work, "run", run, "metrics.jsonl"))]
    assert max(steps) == 4, run
  # The VAE's video run starts from its single-frame warm-up.
  configs = {run: json.load(open(os.path.join(work, "run", run, "config.json"))) for run in ("vae_image", "vae")}
  assert configs["vae_image"]["data"]["num_frames"] == 1 and configs["vae"]["data"]["num_frames"] > 1
  assert configs["vae"]["init_checkpoint"] == os.path.join(str(work), "run", "vae_image")
  from read_jax.convert.vae import load_vae
  _, variables = load_vae(os.path.join(out, "vae"))
  assert not np.allclose(np.asarray(variables["buffers"]["latents_std"]), 1.0)
  # A rerun finds every step done and changes nothing.
  before = os.path.getmtime(os.path.join(out, "pipeline.json"))
  build.build(str(work / "run"), out, num=3, smoke=True, distill=True)
  assert os.path.getmtime(os.path.join(out, "pipeline.json")) == before


@pytest.mark.slow
def test_sample_cli_runs_the_demo_checkpoint(demo):
  work, out = demo
  video = str(work / "out.mp4")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "sample.py"), "--ckpt", out, "--ref",
                      os.path.join(out, "reference.png"), "--audio", os.path.join(out, "speech.wav"), "--out", video],
                     capture_output=True, text=True, env=env, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  info = media.probe(video)
  assert info["video"] == "h264" and info["audio"] == "aac"
  frames = list(iter_frames(video))
  assert len(frames) == 75 and frames[0].shape == (64, 64, 3)  # the bundled 3 s of speech at 25 fps, 64²


@pytest.mark.slow
def test_distill_steps_add_students_to_the_build(demo):
  """--distill runs after the teacher's steps. The demo samples with one branch (cfg "none"), so there is no
  guidance round: the one-pass student is the teacher plus a zero guidance embedding and generates exactly the
  teacher's frames. Then come the progressive rounds (smoke: 2 and 1 steps, the second from the first's
  student), each student a whole checkpoint directory that samples with its own step count and refuses others."""
  from read_jax.errors import ConfigError
  from read_jax.pipeline import ReadPipeline
  work, out = demo
  done = list(json.load(open(os.path.join(work, "run", "done.json"))))
  assert done[done.index("assets") + 1:] == ["student_g", "distill_2", "student_2", "distill_1", "student_1",
                                             "assets_2step", "a2v_causal", "causal_teacher", "causal_student_g",
                                             "causal_distill_1", "causal_student_1", "live_vae", "assets_live"]
  config = json.load(open(os.path.join(work, "run", "distill_1", "config.json")))
  assert config["init_checkpoint"] == os.path.join(str(work), "run", "student_2")  # a student's student
  bundled = out + "_2step"  # the 2-step student beside the teacher: its own A2V-DiT, the rest linked
  assert os.path.islink(os.path.join(bundled, "vae")) and not os.path.islink(os.path.join(bundled, "a2v_dit"))
  assert ReadPipeline.from_pretrained(bundled).config.distilled_steps == (2,)
  teacher = ReadPipeline.from_pretrained(out)
  live = ReadPipeline.from_pretrained(out + "_live")  # the causal student, bundled the same way: the live model
  assert live.dit.causal and (live.config.mode, live.config.live_mode) == ("causal", "causal")
  assert live.config.distilled_steps == (1,)
  # Its own VAE: the teacher's encoder, a causal decoder trained a few steps on the clips and the student's latents,
  # the live decoder's cut of the teacher's (half width, no resnets in the full-resolution block).
  assert not os.path.islink(os.path.join(out + "_live", "vae")) and live.streams_decode
  from read_jax.models.vae_variants import live_decoder
  size, got = live_decoder(teacher.vae.config.to_diffusers()), live.vae.config.to_diffusers()
  assert tuple(got["decoder_block_out_channels"]) == size["decoder_block_out_channels"]
  assert tuple(got["decoder_layers_per_block"]) == size["decoder_layers_per_block"]
  assert got["decoder_layers_per_block"][0] == 0 and size != {
      k: tuple(teacher.vae.config.to_diffusers()[k]) for k in size}
  for a, b in zip(*(jax.tree.leaves(p.vae_variables["params"]["encoder"]) for p in (live, teacher))):
    np.testing.assert_array_equal(a, b)
  log = json.load(open(os.path.join(work, "run", "live_vae", "train_log.json")))
  assert log["steps"] == 2 and log["causal"] and log["student_clips"] == 1 and log["temporal_weight"] > 0
  from read_jax.demo.vae import student_decode_scores  # what the live decoder is scored on: its decodes side by side
  scores = student_decode_scores(out + "_live", os.path.join(out + "_live", "vae"), num=1, seconds=2.0,
                                 progress=False)
  for name in ("window", "whole", "stream"):
    assert -1 <= scores[name]["lip_sync"] <= 1 and scores[name]["boundary_ratio_latent"] > 0, name
    assert scores[name]["flicker"] > 0, name
  for name, steps in (("student_g", ()), ("student_2", (2,)), ("student_1", (1,))):
    pipe = ReadPipeline.from_pretrained(os.path.join(work, "run", name))
    assert pipe.dit.guidance_embeds and pipe.config.cfg == "distilled" and pipe.config.distilled_steps == steps
    assert pipe.config.resolution == teacher.config.resolution
  ref, speech = os.path.join(out, "reference.png"), os.path.join(out, "speech.wav")
  one_pass = ReadPipeline.from_pretrained(os.path.join(work, "run", "student_g"))
  assert (one_pass.config.alpha, one_pass.config.beta) == (0.0, 1.0)
  np.testing.assert_array_equal(one_pass.generate(ref, speech), teacher.generate(ref, speech))
  frames = pipe.generate(ref, speech)
  assert frames.shape == (75, 64, 64, 3)
  with pytest.raises(ConfigError, match="steps=8: this checkpoint was distilled to 1 step"):
    pipe.generate(os.path.join(out, "reference.png"), os.path.join(out, "speech.wav"), steps=8)


@pytest.mark.slow
def test_eval_scores_are_computed(demo):
  from read_jax.pipeline import ReadPipeline
  _, out = demo
  from read_jax.ans import sampling
  pipe = ReadPipeline.from_pretrained(out)
  scores = eval_demo.evaluate(pipe, num=2, seconds=3.0, progress=False, probe_clips=4)
  s = scores["summary"]
  clips = sampling.num_clips(sampling.latent_frames_for_video(75), pipe.config.clip_frames)  # 3 s: 75 frames
  assert s["num_clips"] == 2 and s["boundaries_per_clip"] == clips - 1 > 0
  assert s["lip_sync_ground_truth"] > 0.9  # the measure itself works on real synthetic video
  for key in ("lip_sync", "lip_sync_other_audio", "colour_error", "boundary_ratio_ans", "boundary_ratio_plain",
              "latent_lip_sync", "latent_lip_sync_other_audio", "latent_lip_sync_vae", "speech_readout",
              "speech_readout_whisper"):
    assert np.isfinite(s[key]), key


def test_eval_vae_scores_reconstructions():
  """A perfect reconstruction scores the ground-truth r; one that keeps a single frame per latent frame
  (the mouth frozen over 8 frames) scores far less, near the latent-frame-average reference."""
  evaluate_vae = eval_demo.evaluate_vae
  exact = evaluate_vae(lambda f: f.astype(np.float32) / 127.5 - 1, num=2, seconds=4.0, progress=False)["summary"]
  assert exact["frames_per_clip"] == 97 and exact["psnr"] > 60
  assert exact["mouth_r"] > 0.95 and 0.3 < exact["mouth_r_latent_frame_average"] < 0.85

  def frozen(f):  # frame 0, then the middle frame of each run of 8, repeated
    out = f.astype(np.float32) / 127.5 - 1
    for k in range(1, len(f), 8):
      out[k:k + 8] = out[k + 4]
    return out
  held = evaluate_vae(frozen, num=2, seconds=4.0, progress=False)["summary"]
  assert held["mouth_r"] < exact["mouth_r"] - 0.2 and held["psnr"] < exact["psnr"]


@pytest.mark.slow
def test_speech_effect_measures_the_audio_attention(demo):
  """> 0 with a non-zero audio attention output; exactly 0 with the zero one LTX checkpoints start from,
  and for the same speech twice."""
  from read_jax.data import synthetic
  from read_jax.pipeline import ReadPipeline
  pipe = ReadPipeline.from_pretrained(demo[1])
  clips = [synthetic.make_clip(s, 1.0, 64) for s in synthetic.split_seeds("test", 2)]
  portrait = synthetic.render_face(clips[0].identity, mouth_open=0.0, size=64)
  effect = probes.speech_effect
  out = pipe.dit_params["transformer_blocks"]["audio_attn"]["to_out_0"]
  out["kernel"] = np.random.default_rng(0).normal(size=out["kernel"].shape).astype(np.float32) * 0.1
  assert effect(pipe, portrait, clips[0].audio, clips[1].audio) > 1e-3
  assert effect(pipe, portrait, clips[0].audio, clips[0].audio) == 0.0
  out["kernel"] = np.zeros_like(out["kernel"])
  assert effect(pipe, portrait, clips[0].audio, clips[1].audio) == 0.0


@pytest.mark.slow
def test_latent_lip_sync_reads_the_mouth_from_latents(demo_pipeline):
  """On the bundled VAE's latents of 3 held-out clips the read-out follows the true opening; the latents of another
  clip, or this clip's latents in reverse order, do not."""
  from read_jax.data import synthetic
  pipe = demo_pipeline
  probe = probes.latent_mouth_probe(pipe, num=12, seconds=4.0)
  clips = [synthetic.make_clip(s, 8.0, 64) for s in synthetic.split_seeds("test", 3, 100)]
  own, other, reverse = [], [], []
  for i, clip in enumerate(clips):
    z = pipe.encode_video(clip.frames[:193])  # [25, 4, 4, C]
    own.append(probes.latent_lip_sync(pipe, probe, clip.frames, clip.mouth))
    assert own[-1] == probes.latent_lip_sync(pipe, probe, clip.frames, clip.mouth, z)  # sampled = encoded: same r
    other.append(probes.latent_lip_sync(pipe, probe, clip.frames, clip.mouth, pipe.encode_video(clips[i - 1].frames[:193])))
    reverse.append(probes.latent_lip_sync(pipe, probe, clip.frames, clip.mouth, np.concatenate([z[:1], z[:0:-1]])))
  assert np.mean(own) > 0.6, own  # 0.93 (other 0.14, reversed −0.08)
  assert max(np.mean(other), np.mean(reverse)) < np.mean(own) - 0.4, (own, other, reverse)


@pytest.mark.slow
def test_speech_readout_reads_the_mouth_from_the_speech(demo_pipeline):
  """From the bundled model's Whisper windows and speech latents a linear read-out follows the held-out clips' true
  mouth; from another clip's speech it does not, and from constant speech latents (a SpeechAE that outputs only its
  bias) it reads nothing."""
  import jax

  from read_jax.data import synthetic
  pipe = demo_pipeline.with_config()  # a copy: its SpeechAE params are replaced below
  clips = [synthetic.make_clip(s, 4.0, 64) for s in synthetic.split_seeds("test", 3, 100)]
  for source in ("whisper", "latents"):
    probe = probes.speech_mouth_probe(pipe, source, num=16, seconds=4.0)
    assert probe.shape[1] == 8  # one weight column per frame of a latent frame
    own = [probes.speech_readout(pipe, probe, c.audio, c.mouth, source) for c in clips]
    other = [probes.speech_readout(pipe, probe, clips[i - 1].audio, c.mouth, source) for i, c in enumerate(clips)]
    assert np.mean(own) > 0.5 and abs(np.mean(other)) < 0.25, (source, own, other)  # bundle: 0.79 / 0.66 vs ~0
  pipe.speech_ae_params = jax.tree_util.tree_map(np.asarray, pipe.speech_ae_params)
  proj_out = pipe.speech_ae_params["encoder"]["proj_out"]
  proj_out["kernel"] = np.zeros_like(proj_out["kernel"])
  assert probes.speech_readout(pipe, probe, clips[0].audio, clips[0].mouth) == 0.0


def test_ridge_fit_solves_wide_systems_in_the_dual():
  """With more features than examples (raw Whisper states: 36 × 30720) the fit goes through the N×N system and
  gives the same weights as the D×D normal equations."""
  rng = np.random.default_rng(0)
  for n, d in ((30, 80), (80, 30)):
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, 8))
    want = np.linalg.solve(a.T @ a + 0.3 * np.eye(d), a.T @ b)
    np.testing.assert_allclose(probes.ridge_fit(a, b, 0.3), want, rtol=1e-9, atol=1e-12)
