"""Distillation (read_jax/ans/distill.py, read_jax/train/distill_stage.py): the fresh student is its teacher's
conditional branch, the targets are the sampler's own steps, the smoke run learns and resumes exactly, and the
pipeline samples a student with its step count only."""

import json
import os
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import _train_data
from _bundled import bundled_student
from read_jax.ans import distill, guidance, sampling
from read_jax.ans.solvers import Sampler
from read_jax.config import load_config
from read_jax.convert import checkpoint_dir
from read_jax.errors import ConfigError
from read_jax.pipeline import PipelineConfig, ReadPipeline
from read_jax.train.distill_stage import DistillStage
from read_jax.train.export import import_run
from read_jax.train.loop import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 40  # configs/distill.py:smoke, checkpoints at 20 and 40


def _toy_velocity(x, t, speech, g):
  """A denoiser-shaped function of everything it is given (each input changes the output)."""
  b = x.shape[0]
  tb = t.reshape(t.shape + (1, 1, 1))
  # Frames see each other (z_R, the motion frame and its timestep included), as attention does.
  mix = jnp.tanh(x * (1.0 + tb) + jnp.mean(x * (1.0 + tb), axis=1, keepdims=True))
  s = jnp.mean(speech.reshape(b, -1), axis=-1).reshape(b, 1, 1, 1, 1)
  return mix + s + 0.1 * g[:, 0].reshape(b, 1, 1, 1, 1) - 0.05 * g[:, 1].reshape(b, 1, 1, 1, 1) * x


def _teacher_dir(path, config, seed=0):
  """A read_jax checkpoint directory with a random-weight teacher of ``config``'s sizes (a2v_dit/, speech_ae/)."""
  stage = DistillStage(config)
  params = jax.jit(stage.init)(jax.random.key(seed), stage.batch_spec())
  params = jax.tree.map(np.asarray, nn.unbox(params))
  checkpoint_dir.write_parts(str(path), {"a2v_dit": (stage.teacher, params["teacher"]),
                                         "speech_ae": (stage.speech_ae, params["speech_ae"])})
  return str(path)


def test_split_cfg_velocity_is_eq17_per_example():
  """The batched teacher target (guided_velocity over a batch, (α, β) per example) equals Eq. 17 written out for
  each example, and the sampler's per-clip guided velocity with that example's (α, β)."""
  rng = np.random.default_rng(0)
  b, f = 3, 4
  x = jnp.asarray(rng.normal(size=(b, 1 + f, 2, 3, 5)), jnp.float32)
  t = jnp.asarray(rng.uniform(size=(b, 1 + f)), jnp.float32).at[:, 0].set(0.0)
  speech = jnp.asarray(rng.normal(size=(b, f, 2, 6)), jnp.float32)
  g = jnp.asarray([[2.0, 6.0], [1.0, 3.0], [2.5, 0.5]], jnp.float32)
  denoise = lambda xb, tb, sb: _toy_velocity(xb, tb, sb, jnp.zeros((xb.shape[0], 2)))  # noqa: E731
  got = guidance.guided_velocity(denoise, "split", None, x, t, speech, g)
  for i in range(b):
    one = lambda xi, si: denoise(xi[None], t[i][None], si[None])[0]  # noqa: E731
    empty, ref = one(x[i].at[0].set(0.0), jnp.zeros_like(speech[i])), one(x[i], jnp.zeros_like(speech[i]))
    full = one(x[i], speech[i])
    alpha, beta = float(g[i, 0]), float(g[i, 1])
    eq17 = (1 - alpha - beta) * empty + alpha * ref + beta * full
    np.testing.assert_allclose(np.asarray(got[i]), np.asarray(eq17), rtol=1e-5, atol=1e-5)
    want = guidance.clip_velocity(denoise, "split", None, x[i, 1:], t[i, 1:], x[i, 0], speech[i], g[i])
    np.testing.assert_allclose(np.asarray(got[i, 1:]), np.asarray(want), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("student_steps", [1, 2, 4])
def test_progressive_target_is_two_sampler_steps(student_steps):
  """A student step that follows its target velocity lands exactly where two of the sampler's own steps
  (``sampling.clip_step``, the teacher's schedule) land, for clip 0 and for a later clip whose motion frame
  sits at each substep's end time; the student sees the sampler's per-frame timesteps."""
  rng = np.random.default_rng(1)
  b, f = 16, 4
  latents = jnp.asarray(rng.normal(size=(b, 1 + f, 2, 2, 3)), jnp.float32)
  speech = jnp.asarray(rng.normal(size=(b, f, 2, 6)), jnp.float32)
  g = distill.sample_guidance(jax.random.key(3), b, (1.0, 3.0), (2.0, 8.0))
  ex = distill.progressive_example(jax.random.key(2), latents, student_steps, p_sync=0.5)
  target = distill.progressive_target(_toy_velocity, ex, speech, g)
  sync = np.asarray(ex["is_sync"])
  assert 0 < sync.sum() < b  # both situations drawn
  coarse, fine = distill.student_schedules(student_steps)
  for i in range(b):
    t_a, t_m, t_b = float(ex["t_a"][i]), float(ex["t_m"][i]), float(ex["t_b"][i])
    k = int(np.flatnonzero(np.isclose(coarse, t_a))[0])
    assert np.isclose(t_b, coarse[k + 1]) and np.isclose(t_m, fine[2 * k + 1])
    first = bool(sync[i])
    want_t = [0.0] + [t_a] * f if first else [0.0, t_b] + [t_a] * (f - 1)
    np.testing.assert_allclose(np.asarray(ex["t"][i]), want_t, rtol=0, atol=1e-7)
    x = ex["x_a"][i, 1:]
    one = lambda xb, tb, sb, gb: _toy_velocity(xb, tb, sb, gb)  # noqa: E731
    sampler = Sampler(schedule=jnp.asarray(fine), guidance=g[i], cfg="distilled", solver="euler")
    x = sampling.clip_step(one, sampler, None, x, ex["motion_mid"][i], jnp.asarray(first), t_a, t_m,
                           latents[i, 0], speech[i])
    x = sampling.clip_step(one, sampler, None, x, ex["x"][i, 1], jnp.asarray(first), t_m, t_b,
                           latents[i, 0], speech[i])
    owned = slice(0, f) if first else slice(1, f)
    student_end = ex["x"][i, 1:] + (t_b - t_a) * target[i, 1:]
    np.testing.assert_allclose(np.asarray(student_end[owned]), np.asarray(x[owned]), rtol=1e-5, atol=1e-5)
    assert not first or np.all(np.asarray(ex["owned"][i, 1:]) == 1)
    assert first or (ex["owned"][i, 1] == 0 and np.all(np.asarray(ex["owned"][i, 2:]) == 1))


@pytest.mark.slow
def test_fresh_student_is_the_teachers_conditional_branch(tmp_path):
  """init_from_checkpoint: the student is the teacher plus a guidance embedding whose last layer is zero, so it
  computes the teacher's full branch S(Z, C, z_R) exactly, whatever (α, β); once that layer moves, (α, β) matter."""
  config = load_config("distill.py:smoke")
  stage = DistillStage(config)
  teacher_dir = _teacher_dir(tmp_path / "teacher", config, seed=5)
  fresh = nn.unbox(jax.jit(stage.init)(jax.random.key(9), stage.batch_spec()))
  params = stage.init_from_checkpoint(teacher_dir, fresh)
  g_emb = params["student"]["guidance_embedder"]
  assert np.all(np.asarray(g_emb["linear_2"]["kernel"]) == 0) and np.any(np.asarray(g_emb["linear_1"]["kernel"]) != 0)
  rng = np.random.default_rng(0)
  m, f = stage.teacher, config.data.latent_frames
  x = jnp.asarray(rng.normal(size=(2, 1 + f, config.data.latent_height, config.data.latent_width, m.in_channels)),
                  jnp.float32)
  t = jnp.asarray(rng.uniform(size=(2, 1 + f)), jnp.float32).at[:, 0].set(0.0)
  c = jnp.asarray(rng.normal(size=(2, f, m.audio_tokens, m.audio_dim)), jnp.float32)
  want = jax.jit(m.apply)({"params": params["teacher"]}, x, t, c, stage.text, stage.text_mask)
  student = jax.jit(stage.student.apply)  # one compile for the four calls below (eager: one per op)
  for scales in ([[2.0, 6.0], [1.0, 3.0]], [[0.0, 0.0], [9.0, 1.0]]):
    got = student({"params": params["student"]}, x, t, c, stage.text, stage.text_mask, guidance=jnp.asarray(scales))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  moved = jax.tree.map(lambda a: a, params["student"])
  moved["guidance_embedder"] = dict(g_emb, linear_2=dict(g_emb["linear_2"], kernel=jnp.ones_like(
      g_emb["linear_2"]["kernel"]) * 0.1))
  a, b = (student({"params": moved}, x, t, c, stage.text, stage.text_mask, guidance=jnp.asarray(g))
          for g in ([[2.0, 6.0]] * 2, [[1.0, 3.0]] * 2))
  assert float(jnp.max(jnp.abs(a - b))) > 1e-3
  with pytest.raises(ValueError, match="guidance-distilled student"):
    stage.student.apply({"params": params["student"]}, x, t, c, stage.text, stage.text_mask)
  # A progressive round refuses a CFG teacher: it must start from a guidance-distilled student.
  prog = DistillStage(load_config("distill.py:smoke,mode=progressive,student_steps=2"))
  with pytest.raises(Exception, match="guidance-distilled student"):
    prog.init_from_checkpoint(teacher_dir, nn.unbox(
        jax.jit(prog.init)(jax.random.key(0), prog.batch_spec())))


def _overrides(data, *extra):
  train_glob, val_glob = data
  return [f"--config.data.train_glob={train_glob}", f"--config.data.val_glob={val_glob}", *extra]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return _train_data.write_stage2_shards(str(tmp_path_factory.mktemp("clips")), load_config("distill.py:smoke"))


@pytest.mark.slow
def test_smoke_distillation_learns_resumes_and_exports(tmp_path, data):
  """configs/distill.py:smoke: the guidance round's loss falls, a run resumed from its step-20 checkpoint gives
  the uninterrupted losses bitwise, the export is a student checkpoint (one pass, any steps), and a
  progressive round (4 → 2 steps) from that student learns too and exports a 2-step student."""
  teacher = _teacher_dir(tmp_path / "teacher", load_config("distill.py:smoke"))
  with pytest.raises(ConfigError, match="the teacher"):
    train(load_config("distill.py:smoke", _overrides(data)), str(tmp_path / "no_teacher"))
  config = load_config("distill.py:smoke", _overrides(data, f"--config.init_checkpoint={teacher}",
                                                       "--config.train.log_every=1"))
  straight = train(config, str(tmp_path / "straight"))
  losses = np.array([m["loss"] for _, m in straight["train"]])
  assert losses.shape == (STEPS,) and np.all(np.isfinite(losses))
  assert losses[-10:].mean() < 0.6 * losses[:10].mean(), losses
  val = dict(straight["val"])
  assert val[STEPS]["loss"] < 0.6 * val[0]["loss"], val

  resumed_dir = tmp_path / "resumed"
  shutil.copytree(tmp_path / "straight", resumed_dir)
  shutil.rmtree(resumed_dir / "checkpoints" / str(STEPS))
  resumed = train(config, str(resumed_dir))
  assert [s for s, _ in resumed["train"]] == list(range(21, STEPS + 1))
  want = {s: m["loss"] for s, m in straight["train"]}
  assert {s: m["loss"] for s, m in resumed["train"]} == {s: want[s] for s in range(21, STEPS + 1)}

  student = tmp_path / "student_g"
  shutil.copytree(teacher, student)
  assert import_run(str(tmp_path / "straight"), str(student)) == ["a2v_dit"]
  settings = PipelineConfig.from_dict(json.load(open(student / "pipeline.json")))
  assert settings.cfg == "distilled" and settings.distilled_steps == ()

  prog_config = load_config("distill.py:smoke,mode=progressive,student_steps=2", _overrides(
      data, f"--config.init_checkpoint={student}", "--config.train.log_every=1"))
  prog = train(prog_config, str(tmp_path / "progressive"))
  p_losses = np.array([m["loss"] for _, m in prog["train"]])
  assert np.all(np.isfinite(p_losses)) and p_losses[-10:].mean() < p_losses[:10].mean(), p_losses
  student2 = tmp_path / "student_2"
  shutil.copytree(student, student2)
  import_run(str(tmp_path / "progressive"), str(student2))
  settings = PipelineConfig.from_dict(json.load(open(student2 / "pipeline.json")))
  assert settings.cfg == "distilled" and settings.steps == 2 and settings.distilled_steps == (2,)


def _student_pipeline(steps=2):
  c = load_config("demo.py:tiny")
  c.unlock()
  c.dit.guidance_embeds = True
  c.pipeline.update(dict(cfg="distilled", steps=steps, distilled_steps=(steps,)))
  return ReadPipeline.from_config(jax.random.key(0), c)


def _speech(seconds=1.0):
  t = np.arange(int(seconds * 16000)) / 16000
  return (0.2 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.mark.slow
def test_pipeline_samples_a_student_with_its_steps_only(tmp_path, tiny_pipeline):
  """A 2-step student generates with one denoiser row per step; other step counts, CFG branches on the
  student and the 'distilled' mode on a teacher are refused with the reason; scripts/sample.py refuses
  them before loading any weights (one error line, exit 2)."""
  pipe = _student_pipeline(2)
  face = (np.random.RandomState(1).rand(64, 64, 3) * 255).astype(np.uint8)
  frames = pipe.generate(face, _speech())
  assert frames.shape == (25, 64, 64, 3) and frames.dtype == np.uint8
  with pytest.raises(ConfigError, match="steps=8: this checkpoint was distilled to 2 step"):
    pipe.generate(face, _speech(), steps=8)
  with pytest.raises(ConfigError, match="guidance-distilled student"):
    pipe.generate(face, _speech(), cfg="split")
  with pytest.raises(ConfigError, match="no guidance embedding"):
    tiny_pipeline.generate(face, _speech(), cfg="distilled")

  pipe.save_pretrained(str(tmp_path / "student"))
  assert ReadPipeline.from_pretrained(str(tmp_path / "student")).config.distilled_steps == (2,)
  out = tmp_path / "out.mp4"
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "sample.py"), "--ckpt", str(tmp_path / "student"),
                         "--steps", "4", "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines() == ["error: --steps 4: this checkpoint was distilled to 2 step(s) and "
                                              "samples with no other count"]
  assert not out.exists()


def test_denoiser_evaluations_per_clip():
  """Per clip: the teacher's 8 steps × 3 Split-CFG rows = 24 denoiser rows; a 2-step student's 2 × 1 = 2."""
  calls = []

  def denoise(x, t, speech, g=None):
    calls.append(x.shape[0])
    return jnp.zeros_like(x)

  z_ref, speech = jnp.zeros((1, 1, 2)), jnp.zeros((3, 1, 2))
  for cfg, steps, want in (("split", 8, 24), ("distilled", 2, 2), ("distilled", 1, 1)):
    calls.clear()
    inputs = sampling.ClipInputs(sampling.first_carry((1, 1, 2), steps), jnp.zeros((3, 1, 1, 2)), z_ref, speech)
    jax.jit(lambda: sampling.clip_scan(denoise, Sampler.create(steps=steps, cfg=cfg), None, inputs))()
    assert sum(calls) * steps == want, (cfg, calls)  # the scan traces its body once


def test_bundled_student_is_a_complete_two_step_checkpoint():
  """assets/demo_2step: the demo's 2-step student, its A2V-DiT its own and the other parts the teacher's (links)."""
  settings, config = bundled_student("demo_2step")
  assert settings.cfg == "distilled" and settings.steps == 2 and settings.distilled_steps == (2,)
  assert config["guidance_embeds"] is True
