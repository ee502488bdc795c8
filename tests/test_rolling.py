"""The rolling-window sampler (read_jax.ans.rolling) and the timestep patterns it is trained with.

* the training patterns (``ans.rolling_timesteps``) are exactly the times the sampler gives a window mid-advance;
* with an exact velocity every frame comes out exactly clean, whatever W and S (the per-frame Euler steps add up);
* clean frames are never touched, the ramp-up drops the pre-roll, the flush hands out every real frame;
* on the bundled demo, a LiveSession in rolling mode gives the offline rolling frames, one latent frame per block,
  each as soon as its speech latent (plus W − 1 more) is final.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from read_jax import ans, live, speech
from read_jax import audio as audio_lib
from read_jax.ans import rolling
from read_jax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "assets", "demo")
PORTRAIT = os.path.join(DEMO, "reference.png")
POLICY = "live:1"


# ---------------------------------------------------------------------------------------------
# Training patterns


@pytest.mark.parametrize("noisy", [(1,), (2,), (1, 2, 3)])
def test_rolling_timesteps_structure(noisy):
  f = 8
  cfg = ans.ANSConfig(mu=0.0, rolling_noisy=noisy)
  t, context = ans.rolling_timesteps(jax.random.key(0), 512, 1 + f, cfg)
  t, context = np.asarray(t), np.asarray(context)
  assert t.shape == context.shape == (512, 1 + f)
  assert np.all(t[:, 0] == 0) and not context[:, 0].any()
  counts = f - context[:, 1:].sum(axis=1)  # W per example
  assert set(counts.tolist()) == set(noisy)
  for row, ctx, w in zip(t, context, counts):
    assert np.all(row[1:][ctx[1:]] == 0)  # the clean context
    tau = row[1 + f - w:]
    assert np.all(tau > 0) and np.all(tau <= 1)
    np.testing.assert_allclose(np.diff(tau), 1.0 / w, atol=1e-6)  # evenly spaced levels, oldest least noisy
    assert 0 < tau[0] <= 1.0 / w + 1e-6


def test_training_example_mixes_patterns_and_masks_the_context():
  cfg = ans.ANSConfig(p_rolling=0.5, rolling_noisy=(1, 2))
  z0 = jax.random.normal(jax.random.key(1), (256, 9, 2, 2, 4))
  ex = ans.training_example(jax.random.key(2), z0, None, cfg)
  t, mask, rolling_rows = np.asarray(ex["t"]), np.asarray(ex["loss_mask"]), np.asarray(ex["is_rolling"])
  assert 0.35 < rolling_rows.mean() < 0.65
  assert not np.asarray(ex["is_sync"])[rolling_rows].any()
  # ANS rows: every latent frame is a target; rolling rows: only the noisy ones.
  np.testing.assert_array_equal(mask[~rolling_rows], np.broadcast_to(np.arange(9) > 0, mask[~rolling_rows].shape))
  np.testing.assert_array_equal(mask[rolling_rows], (t[rolling_rows] > 0).astype(np.float32))
  assert set((mask[rolling_rows].sum(axis=1)).tolist()) == {1.0, 2.0}
  # The context frames are clean inputs: Z(0) exactly.
  ctx = rolling_rows[:, None] & (t == 0) & (np.arange(9) > 0)
  np.testing.assert_array_equal(np.asarray(ex["x"])[ctx], np.asarray(z0)[ctx])


def test_p_rolling_zero_keeps_the_ans_draws():
  key = jax.random.key(3)
  t0, sync0, ctx0 = ans.frame_timesteps(key, 64, 9, ans.ANSConfig())
  t1, sync1, ctx1 = ans.frame_timesteps(key, 64, 9, ans.ANSConfig(p_rolling=0.5))
  assert not np.asarray(ctx0).any()
  rows = ~np.asarray(ctx1).any(axis=1)
  assert 0 < rows.sum() < 64
  np.testing.assert_array_equal(np.asarray(t0)[rows], np.asarray(t1)[rows])  # same ANS draws where not rolling


@pytest.mark.parametrize("noisy,substeps", [(1, 4), (2, 4), (3, 2)])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_sampler_times_are_the_training_patterns(noisy, substeps, shift):
  """Mid-advance, a full window's times are [0 × (f − W), u_w], u_w = (w + φ)/W, φ = 1 − s/S: what
  rolling_timesteps draws (shift 1), through the schedule's time shift s·u / (1 + (s − 1)·u) otherwise."""
  f = 8
  schedule = jnp.asarray(ans.timesteps(noisy * substeps, shift))
  ages = jnp.asarray(np.append(np.full(f - noisy, rolling.CLEAN_AGE), np.arange(noisy - 1, -1, -1)), jnp.int32)
  for s in range(substeps):
    t = np.asarray(rolling.frame_times(schedule, ages, s, noisy, substeps))
    phi = 1 - s / substeps
    u = np.append(np.zeros(f - noisy), (np.arange(noisy) + phi) / noisy)
    np.testing.assert_allclose(t, shift * u / (1 + (shift - 1) * u), atol=1e-6)
  end = np.asarray(rolling.frame_times(schedule, ages, substeps, noisy, substeps))
  assert end[f - noisy] == 0  # the oldest noisy frame is clean after the advance


def _oracle(target):
  """An exact velocity for data ``target`` [n, h, w, C]: v = (x − z0)/t on the window's frames (0 where t = 0)."""

  def denoise(params, x, t, speech):
    del speech
    z0 = params  # [B, 1+f, h, w, C] (z_R row included)
    tb = t[:, :, None, None, None]
    return jnp.where(tb > 0, (x - z0) / jnp.maximum(tb, 1e-12), 0.0)

  return denoise


@pytest.mark.parametrize("noisy,steps", [(1, 4), (2, 4), (2, 6), (3, 3)])
def test_exact_velocity_gives_exact_frames(noisy, steps):
  """With an oracle velocity every real frame comes out as its data, the pre-roll is dropped and nothing is lost."""
  f, shape = 5, (2, 2, 3)
  rng = np.random.RandomState(0)
  real = rng.randn(7, *shape).astype(np.float32)  # the data of 7 real latent frames (+ flush frames after)
  pre = rng.randn(f - 1, *shape).astype(np.float32)
  data = np.concatenate([pre, real, rng.randn(noisy - 1, *shape).astype(np.float32)])  # stream indexing q

  # The denoiser needs the data of the window it sees: pass it through params, updated per advance.
  class OracleWindow(rolling.RollingSampler):
    def push(self, speech_latent):
      job = self.job(speech_latent)
      lo = self.q - (f - 1)
      z0 = jnp.asarray(np.concatenate([np.zeros((1,) + shape, np.float32), data[lo:lo + f]]))[None]
      window = rolling.advance(_oracle(data), self.sampler, z0, job, noisy=self.noisy, substeps=self.substeps)
      return self.complete(job, window)

  window = OracleWindow(None, ans.Sampler.create(steps=steps, cfg="none"), None, np.zeros(shape), pre,
                        np.zeros((f - 1, 1, 1)), jax.random.key(0), noisy=noisy)
  out = [window.push(np.zeros((1, 1))) for _ in range(len(real) + noisy - 1)]
  emitted = [o for o in out if o is not None]
  assert [o.r for o in emitted] == list(range(len(real)))
  assert out[:noisy - 1] == [None] * (noisy - 1)  # the ramp-up hands out pre-roll only
  for o in emitted:
    np.testing.assert_allclose(np.asarray(o.latent), real[o.r], atol=2e-5)
    assert o.q == o.r + f - 1


def test_clean_frames_are_untouched():
  f, shape = 4, (1, 1, 2)
  pre = np.arange(3 * 2, dtype=np.float32).reshape(3, *shape)
  noisy_v = lambda x, t, speech: jnp.full_like(x, 1e3)  # noqa: E731  (would move any frame it touched)
  for solver in ans.SOLVERS:
    window = rolling.RollingSampler(noisy_v, ans.Sampler.create(steps=2, cfg="none", solver=solver), None,
                                    np.zeros(shape), pre, np.zeros((3, 1, 1)), jax.random.key(0), noisy=1)
    window.push(np.zeros((1, 1)))
    np.testing.assert_array_equal(np.asarray(window.window[:f - 1]), pre)  # the pre-roll, bitwise, in place


def test_bad_settings_fail_clearly():
  with pytest.raises(ValueError, match="multiple"):
    rolling.check_noisy(5, 2, 8)
  with pytest.raises(ValueError, match="no clean frame"):
    rolling.check_noisy(8, 8, 8)
  with pytest.raises(ValueError, match="at least 2"):
    rolling.DecodeHistory(np.zeros((7, 1, 1, 1)), 1)
  with pytest.raises(ValueError, match="rolling_noisy"):
    ans.ANSConfig(rolling_noisy=(0,))


# ---------------------------------------------------------------------------------------------
# On the demo: offline and live rolling agree


@pytest.fixture(scope="module")
def pipe(demo_pipeline):
  return demo_pipeline.with_config(speech_window=POLICY)


@pytest.mark.slow
@pytest.mark.parametrize("noisy", [1, 2])
def test_live_rolling_equals_offline(pipe, noisy):
  seconds = 1.5  # 37 frames: 5 latent frames of 8
  wave = audio_lib.load_audio(os.path.join(DEMO, "speech.wav"))[:int(seconds * audio_lib.SAMPLE_RATE)]
  pcm = np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)
  wave = pcm.astype(np.float32) / 32768
  offline = pipe.generate(PORTRAIT, wave, seed=1, mode="rolling", noisy=noisy, decode_context=3)
  assert offline.shape[0] == audio_lib.num_video_frames(pcm.shape[0]) == 37
  session = live.LiveSession(pipe, PORTRAIT, seed=1, policy=POLICY, mode="rolling", noisy=noisy, decode_context=3)
  out, fed = [], 0
  for lo in range(0, pcm.shape[0], 320):
    session.feed(pcm[lo:lo + 320])
    fed += len(pcm[lo:lo + 320])
    out += [(fed, b) for b in session.frames()]
  out += [(None, b) for b in session.finish()]
  frames = np.concatenate([b.frames for _, b in out])
  assert frames.shape == offline.shape
  diff = np.abs(frames.astype(np.int16) - offline.astype(np.int16))
  assert diff.max() <= 1 and (diff > 0).mean() <= 1e-4
  assert [b.index for _, b in out] == list(range(5)) and [b.first_frame for _, b in out] == [0, 8, 16, 24, 32]
  assert session.done
  # Real latent r leaves once the speech latent of stream frame q = r + f − 1 + (W − 1) is final: its audio's end
  # plus the window's look-ahead, counted after the pre-roll's silence.
  f = pipe.config.clip_frames
  policy = speech.window_policy(POLICY)
  pre = rolling.pre_roll_frames(f) * audio_lib.SAMPLE_RATE // 25
  for fed_at, b in out:
    need = int(policy.window_end(b.index + f - 1 + noisy - 1)) - pre
    if need <= pcm.shape[0]:
      assert fed_at == -(-need // 320) * 320 or fed_at == pcm.shape[0], (b.index, fed_at, need)
    else:
      assert fed_at is None


def test_sessions_share_the_pre_roll_silence(pipe):
  """Every rolling session starts with the same pre-roll silence: its Whisper windows are computed once per
  pipeline, and each later session starts from a copy of that stream (no encoder call), independent of the others
  and equal to feeding the silence itself."""
  f = pipe.config.clip_frames
  samples = rolling.pre_roll_frames(f) * audio_lib.SAMPLE_RATE // 25
  fresh = speech.LiveSpeechFeatures(pipe.speech_encoder, POLICY)
  want = fresh.feed(np.zeros(samples, np.float32))
  first, rows = pipe.live_speech_features(POLICY, samples)
  np.testing.assert_array_equal(rows, want)
  calls = []
  encoder = pipe.speech_encoder

  class Counting:
    def __getattr__(self, name):
      return getattr(encoder, name)

    def encode_tail(self, *a, **kw):
      calls.append(1)
      return encoder.encode_tail(*a, **kw)

  counted = pipe.with_config()
  counted.speech_encoder = Counting()
  second, rows2 = counted.live_speech_features(POLICY, samples)
  np.testing.assert_array_equal(rows2, want)
  assert calls == [] and second.encoder is counted.speech_encoder
  speech_in = np.random.default_rng(0).uniform(-0.3, 0.3, 2 * 5120).astype(np.float32)
  np.testing.assert_array_equal(second.feed(speech_in), fresh.feed(speech_in))  # as if it had fed the silence
  assert len(calls) > 0 and second.frames == fresh.frames
  assert first.num_samples == samples  # the first stream did not move
  session = live.LiveSession(counted, PORTRAIT, policy=POLICY, mode="rolling")
  assert session._features.num_samples == samples


def test_live_rolling_checks_its_settings(pipe):
  with pytest.raises(ConfigError, match="multiple"):
    live.LiveSession(pipe, PORTRAIT, policy=POLICY, mode="rolling", noisy=3)
  with pytest.raises(ConfigError, match="mode"):
    live.LiveSession(pipe, PORTRAIT, policy=POLICY, mode="rollin")
