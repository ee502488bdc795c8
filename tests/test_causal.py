"""The block-causal A2V-DiT and its KV-cached window (read_jax.ans.causal).

* causality by perturbation: changing latent frame k moves no output of a frame before it, nor z_R's;
* a cached pass equals the frame's rows of the uncached forward (the ring in any slot order);
* the cached window's stream equals the uncached banded block-causal forward of the whole stream
  (``A2VDiT.causal_call``), step by step, across the ring's wrap: max error ≤ 1e-5 of the latents' scale;
* a batch of sessions (vmapped advance) gives each session's own frames;
* the causal progressive-distillation example owns only the last frame, its context clean.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _bundled import ROOT, bundled_student
from read_jax.ans import causal, distill
from read_jax.ans.solvers import Sampler
from read_jax.config import load_config
from read_jax.models import a2v_dit as dit

H, W = 3, 5  # odd latent sizes: a swapped axis cannot pass
F = 4  # the window: 3 cached frames, so 5 advances wrap the ring


@pytest.fixture(scope="module")
def model_params():
  cfg = dict(load_config("a2v_dit:tiny").model)
  model = dit.build_model({**cfg, "causal": True})
  params = dit.init_params(model, jax.random.key(0))
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))  # every parameter random, the zero-init ones too
  params = tree.unflatten([p + 0.2 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  text = jax.random.normal(jax.random.key(2), (1, 4, model.caption_channels))
  text_kv = model.apply({"params": params}, text, jnp.ones((1, 4), bool), method=dit.A2VDiT.encode_text)
  return model, params, (params, text_kv)


def _inputs(model, frames, key=3):
  ks = jax.random.split(jax.random.key(key), 3)
  x = jax.random.normal(ks[0], (2, frames, H, W, model.in_channels))
  t = jax.random.uniform(ks[1], (2, frames)).at[:, 0].set(0.0)
  speech = jax.random.normal(ks[2], (2, frames - 1, model.audio_tokens, model.audio_dim))
  return x, t, speech


@pytest.mark.slow
def test_block_causal_by_perturbation(model_params):
  model, _, params = model_params
  den = jax.jit(dit.Denoiser(model))  # jitted here: eager, each op of the model compiles on its own
  x, t, speech = _inputs(model, 7)
  v = den(params, x, t, speech)
  for k in (2, 5):
    moved = den(params, x.at[:, k].add(1.0), t, speech.at[:, k - 1].add(1.0))
    diff = np.abs(np.asarray(moved - v)).max(axis=(2, 3, 4))  # [B, T]
    assert diff[:, :k].max() == 0.0  # z_R and every earlier frame: bitwise unchanged
    assert diff[:, k:].min() > 1e-3  # the frame itself and every later one move
  # The same weights without the mask: earlier frames see later ones.
  bidir = jax.jit(dit.Denoiser(dit.build_model(_fields(model, causal=False))))
  moved = bidir(params, x.at[:, 5].add(1.0), t, speech)
  assert np.abs(np.asarray(moved - bidir(params, x, t, speech)))[:, 1:5].max() > 1e-3


def _fields(model, **over):
  return {**{k: getattr(model, k) for k in dit.full_size_fields()}, **over}


@pytest.mark.slow
def test_cached_pass_equals_uncached_rows(model_params):
  model, _, params = model_params
  den = dit.Denoiser(model)
  forward, frame_kv, cached = (jax.jit(f) for f in (den, den.frame_kv, den.cached))  # eager: op by op
  x, t, speech = _inputs(model, F + 1, key=4)
  x, speech = x[:1], speech[:1]
  t = t[:1].at[:, :F].set(0.0)  # a window: z_R and F − 1 clean frames, the last noisy
  v = forward(params, x, t, speech)[:, -1:]
  kv = frame_kv(params, x[:, :F], t[:, :F], speech[:, :F - 1])
  for order in ([0, 1, 2], [2, 0, 1]):  # ring slots in any order
    o = np.asarray(order)
    view = dit.KVCacheView(dit.FrameKV(kv.k[:, :, :1], kv.v[:, :, :1]),
                           dit.FrameKV(kv.k[:, :, 1:][:, :, o], kv.v[:, :, 1:][:, :, o]),
                           jnp.asarray(o + 1, jnp.int32)[None], jnp.ones((1, F - 1), bool))
    vc, kv_new = cached(params, x[:, -1:], t[:, -1:], speech[:, -1:], view)
    scale = float(np.abs(np.asarray(v)).max())
    assert float(np.abs(np.asarray(vc - v)).max()) <= 1e-5 * scale
    full = frame_kv(params, x, t, speech)
    assert float(np.abs(np.asarray(kv_new.k - full.k[:, :, -1:])).max()) <= 1e-5 * float(np.abs(full.k).max())
  # An invalid slot is not attended: masking the oldest equals dropping it from the window.
  view = dit.KVCacheView(dit.FrameKV(kv.k[:, :, :1], kv.v[:, :, :1]), dit.FrameKV(kv.k[:, :, 1:], kv.v[:, :, 1:]),
                         jnp.asarray([[1, 2, 3]], jnp.int32), jnp.asarray([[False, True, True]]))
  vm, _ = cached(params, x[:, -1:], t[:, -1:], speech[:, -1:], view)
  assert float(np.abs(np.asarray(vm - vc)).max()) > 1e-3


@functools.partial(jax.jit, static_argnames=("model", "window"))
def _causal_call(model, params, seq, t, speech, text_kv, window):
  """``A2VDiT.causal_call``, jitted (eager, each op of the model compiles on its own: seconds per call)."""
  return model.apply({"params": params}, seq, t, speech, text_kv, window=window, method=dit.A2VDiT.causal_call)


def _stream_reference(model, params, sampler, z_ref, pre_roll, pre_speech, noises, speeches):
  """The uncached reference: every step of every frame recomputes the whole stream so far (z_R, the clean frames,
  the noisy one) with the banded block-causal forward, window F."""
  clean, speech_all, out, velocities = list(pre_roll), list(pre_speech), [], []
  sched = np.asarray(sampler.schedule)
  for noise, sp in zip(noises, speeches):
    x = noise
    for s in range(sampler.steps):
      seq = jnp.stack([z_ref] + clean + [x])[None]
      t = jnp.zeros(seq.shape[:2]).at[:, -1].set(sched[s])
      v = _causal_call(model, params[0], seq, t, jnp.stack(speech_all + [sp])[None], params[1], F)[0, -1]
      velocities.append(v)
      x = x + (sched[s + 1] - sched[s]) * v
    clean.append(x)
    speech_all.append(sp)
    out.append(x)
  return out, velocities


@pytest.mark.slow
def test_cached_stream_equals_uncached_across_the_wrap(model_params):
  model, _, params = model_params
  den = dit.Denoiser(model)
  sampler = Sampler.create(steps=2, cfg="none")
  ks = jax.random.split(jax.random.key(5), 4)
  c = model.in_channels
  z_ref = jax.random.normal(ks[0], (H, W, c))
  pre_roll = jax.random.normal(ks[1], (F - 1, H, W, c))
  pre_speech = jax.random.normal(ks[2], (F - 1, model.audio_tokens, model.audio_dim))
  speeches = jax.random.normal(ks[3], (5, model.audio_tokens, model.audio_dim))
  window = causal.CausalWindow(den, sampler, params, z_ref, pre_roll, pre_speech, jax.random.key(9))
  got, noises = [], []
  for r in range(5):  # C = 3 slots: advances 3 and 4 overwrite slots the ring already reused
    job = window.job(speeches[r])
    noises.append(job.noise)
    e = window.complete(job, causal.advance(den, sampler, params, job))
    assert (e.q, e.r) == (F - 1 + r, r)
    got.append(e.latent)
  assert sorted(np.asarray(window.cache.index).tolist()) == [5, 6, 7]  # the last three frames, wrapped
  want, _ = _stream_reference(model, params, sampler, z_ref, list(pre_roll), list(pre_speech), noises, speeches)
  scale = max(float(np.abs(np.asarray(w)).max()) for w in want)
  errors = [float(np.abs(np.asarray(g - w)).max()) / scale for g, w in zip(got, want)]
  print("relative max error per advance:", ["%.2e" % e for e in errors])
  assert max(errors) <= 1e-5
  # The band matters: past the window, the unbanded forward (every frame since the start, z_R at position 0) is
  # another model, which the cache must not (and does not) equal.
  seq = jnp.stack([z_ref] + list(pre_roll) + got[:4] + [noises[4]])[None]
  t = jnp.zeros(seq.shape[:2]).at[:, -1].set(1.0)
  sp = jnp.concatenate([pre_speech, speeches])[None]
  banded, unbanded = (_causal_call(model, params[0], seq, t, sp, params[1], w)[0, -1] for w in (F, None))
  assert float(np.abs(np.asarray(banded - unbanded)).max()) > 1e-3


def test_batched_advance_equals_single(model_params):
  model, _, params = model_params
  den = dit.Denoiser(model)
  sampler = Sampler.create(steps=2, cfg="none")
  c = model.in_channels
  windows, jobs = [], []
  for i in range(3):
    ks = jax.random.split(jax.random.key(20 + i), 3)
    w = causal.CausalWindow(den, sampler, params, jax.random.normal(ks[0], (H, W, c)),
                            jax.random.normal(ks[1], (F - 1, H, W, c)),
                            jax.random.normal(ks[2], (F - 1, model.audio_tokens, model.audio_dim)), jax.random.key(i))
    windows.append(w)
    jobs.append(w.job(jnp.full((model.audio_tokens, model.audio_dim), 0.1 * i)))
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *jobs)
  latents, caches = causal.advance_batch(den, sampler, params, stacked)
  for b, (w, job) in enumerate(zip(windows, jobs)):
    one, cache = causal.advance(den, sampler, params, job)
    np.testing.assert_allclose(np.asarray(latents[b]), np.asarray(one), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(caches.index[b]), np.asarray(cache.index))


def test_window_refuses_bidirectional_models_and_cfg_branches(model_params):
  model, _, params = model_params
  c = model.in_channels
  args = (params, jnp.zeros((H, W, c)), jnp.zeros((F - 1, H, W, c)),
          jnp.zeros((F - 1, model.audio_tokens, model.audio_dim)), jax.random.key(0))
  with pytest.raises(ValueError, match="not block-causal"):
    causal.CausalWindow(dit.Denoiser(dit.build_model(_fields(model, causal=False))), Sampler.create(cfg="none"), *args)
  with pytest.raises(ValueError, match="runs one"):
    causal.CausalWindow(dit.Denoiser(model), Sampler.create(cfg="split"), *args)


def test_causal_progressive_example_owns_the_last_frame():
  z0 = jax.random.normal(jax.random.key(7), (64, 1 + 5, 3, 5, 4))
  ex = distill.progressive_example(jax.random.key(8), z0, 2, pattern="causal")
  owned, t = np.asarray(ex["owned"]), np.asarray(ex["t"])
  np.testing.assert_array_equal(owned, np.broadcast_to(np.arange(6) == 5, owned.shape).astype(owned.dtype))
  np.testing.assert_array_equal(t[:, :5], 0.0)  # z_R and the context clean, as the cache holds them
  np.testing.assert_array_equal(np.asarray(ex["x"])[:, 1:5], np.asarray(z0)[:, 1:5])
  assert set(np.round(t[:, 5], 6).tolist()) == {1.0, 0.5}  # the 2-step student's points T'_0, T'_1
  assert not np.asarray(ex["is_sync"]).any()


# ---------------------------------------------------------------------------------------------
# Integration on the demo: the offline causal stream and a live causal session agree


@pytest.fixture(scope="module")
def causal_pipe(tmp_path_factory):
  """The demo's checkpoint with its A2V-DiT run under the causal mask (the teacher's weights: the frames are not
  good, the plumbing is what is tested; the trained student is docs/distillation.md's)."""
  import json
  import os
  import shutil

  from read_jax.pipeline import ReadPipeline
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  ckpt = str(tmp_path_factory.mktemp("causal") / "ckpt")
  shutil.copytree(os.path.join(root, "assets", "demo"), ckpt)
  path = os.path.join(ckpt, "a2v_dit", "config.json")
  config = json.load(open(path))
  config["config"]["causal"] = True
  json.dump(config, open(path, "w"))
  pipeline = json.load(open(os.path.join(ckpt, "pipeline.json")))
  json.dump({**pipeline, "live_mode": "causal", "steps": 2}, open(os.path.join(ckpt, "pipeline.json"), "w"))
  return ReadPipeline.from_pretrained(ckpt).with_config(speech_window="live:1"), os.path.join(ckpt, "reference.png")


@pytest.mark.slow
def test_live_causal_equals_offline(causal_pipe):
  from read_jax import audio as audio_lib
  from read_jax import live
  pipe, portrait = causal_pipe
  wave = audio_lib.load_audio(portrait.replace("reference.png", "speech.wav"))[:int(1.5 * audio_lib.SAMPLE_RATE)]
  pcm = np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)
  wave = pcm.astype(np.float32) / 32768
  offline = pipe.generate(portrait, wave, seed=1, mode="causal", decode_context=3)
  assert offline.shape[0] == 37
  session = live.LiveSession(pipe, portrait, seed=1, policy="live:1", decode_context=3)  # live_mode "causal"
  assert isinstance(session, live.CausalSession)
  blocks = []
  for lo in range(0, pcm.shape[0], 320):
    session.feed(pcm[lo:lo + 320])
    blocks += list(session.frames())
  blocks += session.finish()
  frames = np.concatenate([b.frames for b in blocks])
  diff = np.abs(frames.astype(np.int16) - offline.astype(np.int16))
  assert frames.shape == offline.shape and diff.max() <= 1
  assert [b.first_frame for b in blocks] == [0, 8, 16, 24, 32] and session.done
  rolling_frames = pipe.generate(portrait, wave, seed=1, mode="rolling", noisy=1, decode_context=3)
  assert np.abs(rolling_frames.astype(np.int16) - offline.astype(np.int16)).max() > 1  # another sampler
  from read_jax.errors import ConfigError
  with pytest.raises(ConfigError, match="one noisy frame"):
    live.LiveSession(pipe, portrait, policy="live:1", noisy=2)
  with pytest.raises(ConfigError, match="one"):
    live.LiveSession(pipe, portrait, policy="live:1", cfg="split", steps=2)


def test_bundled_live_model_is_the_causal_student():
  """assets/demo_live: the demo's causal 2-step student (block-causal A2V-DiT, one pass per step), its other parts
  the teacher's (links), set to sample files and live sessions through the causal window."""
  settings, config = bundled_student("demo_live", own=("vae",))
  assert (settings.mode, settings.live_mode, settings.noisy_frames) == ("causal", "causal", 1)
  assert settings.cfg == "distilled" and settings.steps == 2 and settings.distilled_steps == (2,)
  assert config["causal"] is True and config["guidance_embeds"] is True
  # Its VAE: the teacher's encoder and latent statistics (the latents the student was trained on), a causal
  # decoder (so sessions stream each latent frame once: docs/demo.md, "A causal decoder"), the live decoder's
  # smaller size (half width, no resnets in the full-resolution block).
  from read_jax.convert.vae import load_vae
  from read_jax.models.vae_variants import live_decoder
  (model, ours), (teacher_model, theirs) = (load_vae(os.path.join(ROOT, "assets", d, "vae"))
                                            for d in ("demo_live", "demo"))
  assert model.config.decoder_causal and not teacher_model.config.decoder_causal
  size = live_decoder(teacher_model.config.to_diffusers())
  assert {k: tuple(model.config.to_diffusers()[k]) for k in size} == size
  for a, b in zip(jax.tree.leaves((ours["params"]["encoder"], ours["buffers"])),
                  jax.tree.leaves((theirs["params"]["encoder"], theirs["buffers"]))):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_bundled_live_session_compiles_before_the_speech(count_compiles):
  """assets/demo_live (the causal student with its streaming decoder): everything the session runs per latent
  frame (speech window, the cached advance, the decoder stream's step) compiles when the session is made, so the
  first block does not wait for a compile."""
  from read_jax import audio as audio_lib
  from read_jax import live
  from read_jax.pipeline import ReadPipeline
  bundled_student("demo_live", own=("vae",))  # skips when assets/demo_live is not checked out
  pipe = ReadPipeline.from_pretrained(os.path.join(ROOT, "assets", "demo_live"))
  assert pipe.streams_decode
  speech = os.path.join(ROOT, "assets", "demo_live", "speech.wav")
  wave = audio_lib.load_audio(speech)[:int(1.2 * audio_lib.SAMPLE_RATE)]
  pcm = np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)
  session = live.LiveSession(pipe, os.path.join(ROOT, "assets", "demo_live", "reference.png"), seed=3)
  assert isinstance(session, live.CausalSession)
  with count_compiles() as c:
    blocks = []
    for lo in range(0, pcm.shape[0], 320):
      session.feed(pcm[lo:lo + 320])
      blocks += list(session.frames())
  assert len(blocks) >= 2 and c.count == 0
