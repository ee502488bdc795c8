"""Generation with a causal VAE decoder: clips and the rolling window decode one stream per video
with a carried state (read_jax.models.vae.stream_decode_*), so a generated video is exactly the whole-video decode
of its latents, live sessions give the offline frames, and sessions batched in the engine give their frames alone.

A tiny random-weight pipeline (configs/demo.py:tiny with its decoder made causal: 64² frames, clips of 3 latent
frames)."""

import time

import jax
import numpy as np
import pytest

from read_jax import live
from read_jax.config import load_config
from read_jax.constants import FRAMES_PER_LATENT
from read_jax.pipeline import ReadPipeline, decode_key
from read_jax.serve.engine import Engine

SR = 16000


@pytest.fixture(scope="module")
def pipe():
  config = load_config("demo.py:tiny")
  config.vae.decoder_causal = True
  p = ReadPipeline.from_config(jax.random.key(3), config)
  assert p.streams_decode and not ReadPipeline.from_config(jax.random.key(3), load_config("demo.py:tiny")).streams_decode
  return p.with_config(speech_window="live:1")


def _speech(seconds, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * SR)) / SR
  wave = 0.3 * np.sin(2 * np.pi * 170 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + seed)) + 0.02 * rng.normal(size=t.size)
  return np.clip(wave, -1, 1).astype(np.float32)


def _face(seed=0):
  return np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)


@pytest.mark.slow
def test_clips_decode_as_one_stream(pipe):
  """Clip mode: every clip continues the video's decode stream, so the frames are the whole-video decode of the
  sampled latents (clip boundaries decode like any other latent frame)."""
  wave = _speech(2.3)
  frames = pipe.generate(_face(), wave, seed=2)
  z = pipe.sample_latents(_face(), wave, seed=2)
  whole = pipe.decode_frames(z, decode_key(jax.random.key(2), 0))[:frames.shape[0]]
  assert frames.shape == whole.shape == (57, 64, 64, 3)
  assert np.abs(frames.astype(int) - whole).max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["clip", "rolling"])
def test_live_sessions_give_the_offline_frames(pipe, mode):
  wave = _speech(1.7, seed=1)
  pcm = np.round(wave * 32767).astype(np.int16)
  wave = pcm.astype(np.float32) / 32768
  offline = pipe.generate(_face(1), wave, seed=4, mode=mode, noisy=1)
  session = live.LiveSession(pipe, _face(1), seed=4, mode=mode, **({"noisy": 1} if mode == "rolling" else {}))
  blocks = []
  for lo in range(0, pcm.size, 320):
    session.feed(pcm[lo:lo + 320])
    blocks += list(session.frames())
  blocks += session.finish()
  frames = np.concatenate([b.frames for b in blocks])
  assert frames.shape == offline.shape == (42, 64, 64, 3)
  assert np.abs(frames.astype(int) - offline).max() <= 1
  if mode == "rolling":
    assert all(b.frames.shape[0] == FRAMES_PER_LATENT for b in blocks[:-1])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["clip", "rolling"])
def test_engine_batches_decode_streams(pipe, mode, count_compiles):
  """Two sessions of different lengths on one lane: their units and their decode streams run batched (the stream
  state of each a row of a vmapped step), each session's frames as it gets them alone; nothing compiles after
  start()."""
  engine = Engine(pipe, batch_sizes=(1, 2), max_sessions=2, mode=mode, realtime_margin=None,
                  devices=jax.devices()[:1]).start()
  waves = [_speech(1.5, seed=5), _speech(0.9, seed=6)]
  blocks = {0: [], 1: []}
  done = []
  try:
    with count_compiles() as compiles:
      sids = [engine.open(_face(i), seed=i, on_block=blocks[i].append, on_done=done.append) for i in range(2)]
      for lo in range(0, max(w.size for w in waves), 4000):
        for sid, w in zip(sids, waves):
          if lo < w.size:
            engine.feed(sid, w[lo:lo + 4000])
      for sid in sids:
        engine.end(sid)
      t0 = time.time()
      while len(done) < 2 and time.time() - t0 < 120:
        time.sleep(0.05)
    assert len(done) == 2 and compiles.count == 0, (done, compiles.count)
    stats = engine.stats()
    assert stats["units_total"] > stats["batches_total"]  # some batches held both sessions
  finally:
    engine.stop()
  for i, wave in enumerate(waves):
    alone = live.LiveSession(pipe, _face(i), seed=i, mode=mode)
    alone.feed(wave)
    want = np.concatenate([b.frames for b in alone.finish()])
    got = np.concatenate([b.frames for b in blocks[i]])
    assert got.shape == want.shape and np.abs(got.astype(int) - want).max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rolling"])
def test_live_latents_are_what_a_session_decodes(pipe, mode):
  """sample_latents in a live mode gives the window's latents as they turn clean: after the pre-roll, decoded as
  one video by the causal decoder, they are the frames the live mode generates (what the live decoder's training
  data is made of: read_jax.demo.vae.student_sequences)."""
  wave = _speech(1.7, seed=3)
  frames = pipe.generate(_face(2), wave, seed=6, mode=mode, noisy=1)
  z = pipe.sample_latents(_face(2), wave, seed=6, mode=mode, noisy=1)
  pre = pipe.pre_roll_latents(_face(2))
  assert z.shape[0] * FRAMES_PER_LATENT >= frames.shape[0] > (z.shape[0] - 1) * FRAMES_PER_LATENT
  whole = pipe.decode_frames(np.concatenate([pre, z]), decode_key(jax.random.key(6), 0))
  np.testing.assert_allclose(whole[-z.shape[0] * FRAMES_PER_LATENT:][:frames.shape[0]], frames, atol=1)
  with pytest.raises(TypeError, match="progress"):
    pipe.sample_latents(_face(2), wave, mode=mode, progress=None)
