"""ANS forward process (§3.3, Eq. 11–15, App. C.3): timestep law, dropout rates, the clean reference frame."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from read_jax import ans

N = 20_000  # examples in the statistical tests: rates within ±4σ ≈ ±0.014 (p = 0.5) / ±0.0085 (p = 0.1)


def _logit_normal_cdf(mu, sigma=1.0):
  return lambda t: stats.norm.cdf(np.log(t) - np.log1p(-t), mu, sigma)


def _within(fraction, p, n):
  assert abs(fraction - p) < 4 * np.sqrt(p * (1 - p) / n), (fraction, p)


def test_sample_pair_follows_shifted_logit_normal():
  t1, t2 = ans.sample_pair(jax.random.key(0), (N,), 2.05, 1.0)
  t1, t2 = np.asarray(t1, np.float64), np.asarray(t2, np.float64)
  assert t1.shape == t2.shape == (N,)
  assert (t1 < t2).all() and (t1 > 0).all() and (t2 < 1).all()
  # The pooled pair is two independent draws of sigmoid(N(2.05, 1)); t1 is their min, t2 their max.
  pooled = np.concatenate([t1, t2])
  assert stats.kstest(pooled, _logit_normal_cdf(2.05)).pvalue > 1e-3
  phi = _logit_normal_cdf(2.05)
  assert stats.kstest(t2, lambda t: phi(t) ** 2).pvalue > 1e-3
  assert stats.kstest(t1, lambda t: 1 - (1 - phi(t)) ** 2).pvalue > 1e-3
  # The test has power: a shift of μ by 0.1 is rejected.
  assert stats.kstest(pooled, _logit_normal_cdf(1.95)).pvalue < 1e-6
  assert stats.kstest(pooled, _logit_normal_cdf(2.05, 1.1)).pvalue < 1e-6


def test_frame_timesteps_structure_and_sync_rate():
  t, is_sync, _ = ans.frame_timesteps(jax.random.key(1), N, 5, ans.ANSConfig())
  t, is_sync = np.asarray(t), np.asarray(is_sync)
  assert t.shape == (N, 5) and is_sync.shape == (N,) and is_sync.dtype == bool
  assert (t[:, 0] == 0).all()  # the reference frame is clean
  assert (t[:, 2:] == t[:, 2:3]).all()  # frames 2 … f share t2
  assert (t[is_sync, 1] == t[is_sync, 2]).all()  # synchronous: [0, t2, t2, …]
  assert (t[~is_sync, 1] < t[~is_sync, 2]).all()  # asynchronous: [0, t1, t2, …], t1 < t2
  _within(is_sync.mean(), 0.5, N)
  # In asynchronous rows (t1, t2) are the sorted pair, so pooled they follow sigmoid(N(2.05, 1)).
  pooled = np.concatenate([t[~is_sync, 1], t[~is_sync, 2]]).astype(np.float64)
  assert stats.kstest(pooled, _logit_normal_cdf(2.05)).pvalue > 1e-3
  # Examples in one batch draw independent timesteps.
  assert len(np.unique(t[:, 2])) > 0.99 * N


@pytest.mark.parametrize("p_sync", [0.0, 1.0])
def test_frame_timesteps_sync_extremes(p_sync):
  t, is_sync, _ = ans.frame_timesteps(jax.random.key(2), 64, 3, ans.ANSConfig(p_sync=p_sync))
  assert bool(np.all(np.asarray(is_sync))) == (p_sync == 1.0)
  assert np.all((np.asarray(t[:, 1]) == np.asarray(t[:, 2])) == (p_sync == 1.0))


@pytest.fixture(scope="module")
def example():
  key = jax.random.key(3)
  latents = jax.random.normal(jax.random.fold_in(key, 0), (N, 3, 1, 1, 2))  # [B, T, H, W, C]
  speech = 1.0 + jax.random.uniform(jax.random.fold_in(key, 1), (N, 2, 2, 3))  # never zero by chance
  out = jax.jit(ans.training_example, static_argnames="cfg")(key, latents, speech, cfg=ans.ANSConfig())
  return np.asarray(latents), np.asarray(speech), jax.tree.map(np.asarray, out)


def test_dropout_rates(example):
  _, _, out = example
  _within(out["drop_identity"].mean(), 0.1, N)
  _within(out["drop_audio"].mean(), 0.1, N)
  _within(out["is_sync"].mean(), 0.5, N)
  _within((out["drop_identity"] & out["drop_audio"]).mean(), 0.01, N)  # drawn independently


def test_conditions_zeroed_exactly_where_dropped(example):
  latents, speech, out = example
  drop_id, drop_audio = out["drop_identity"], out["drop_audio"]
  np.testing.assert_array_equal(out["x"][drop_id, 0], 0.0)
  np.testing.assert_array_equal(out["speech"][drop_audio], 0.0)
  np.testing.assert_array_equal(out["speech"][~drop_audio], speech[~drop_audio])


def test_reference_frame_never_noised(example):
  latents, _, out = example
  np.testing.assert_array_equal(out["t"][:, 0], 0.0)
  keep = ~out["drop_identity"]
  np.testing.assert_array_equal(out["x"][keep, 0], latents[keep, 0])
  np.testing.assert_array_equal(out["loss_mask"][:, 0], 0.0)
  np.testing.assert_array_equal(out["loss_mask"][:, 1:], 1.0)


def test_noise_follows_eq_13_14(example):
  latents, _, out = example
  t = out["t"][:, :, None, None, None]
  eps = out["target"] + latents  # v = ε − Z(0)
  # Z(t) = (1 − t)·Z(0) + t·ε on the noised frames, with ε standard normal.
  np.testing.assert_allclose(out["x"][:, 1:], ((1 - t) * latents + t * eps)[:, 1:], rtol=1e-5, atol=1e-5)
  assert abs(eps.mean()) < 0.02 and abs(eps.std() - 1.0) < 0.02
  # Noise is independent across frames: frames 1 and 2 of an example are uncorrelated.
  assert abs(np.corrcoef(eps[:, 1].ravel(), eps[:, 2].ravel())[0, 1]) < 0.03


@pytest.mark.slow
def test_noise_latents_dtype_and_shape_check():
  z0 = jax.random.normal(jax.random.key(4), (2, 3, 4, 5, 6)).astype(jnp.bfloat16)
  t = jnp.array([[0.0, 0.3, 0.9], [0.0, 1.0, 1.0]])
  zt, v = jax.jit(ans.noise_latents)(jax.random.key(5), z0, t)
  assert zt.dtype == jnp.bfloat16 and v.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(zt[:, 0]), np.asarray(z0[:, 0]))
  np.testing.assert_allclose(np.asarray(zt[1, 1:], np.float32), np.asarray(v[1, 1:] + z0[1, 1:].astype(jnp.float32)),
                             rtol=1e-2, atol=1e-2)  # t = 1: pure noise ε
  with pytest.raises(ValueError, match=r"expected \[B, T\]"):
    ans.noise_latents(jax.random.key(5), z0, t[:, :2])


def test_flow_matching_loss_ignores_reference_frame():
  rng = np.random.default_rng(0)
  target = rng.normal(size=(3, 4, 2, 2, 5)).astype(np.float32)
  mask = np.broadcast_to(np.arange(4) > 0, (3, 4)).astype(np.float32)
  v_pred = target.copy()
  v_pred[:, 0] += 100.0  # any prediction for z_R is ignored
  assert float(ans.flow_matching_loss(v_pred, target, mask)) == 0.0
  v_pred = v_pred + rng.normal(size=target.shape).astype(np.float32)
  want = np.mean((v_pred[:, 1:].astype(np.float64) - target[:, 1:]) ** 2)  # MSE over frames 1 … f
  np.testing.assert_allclose(float(ans.flow_matching_loss(v_pred, target, mask)), want, rtol=1e-5)
  loss_bf16 = ans.flow_matching_loss(jnp.asarray(v_pred, jnp.bfloat16), target, mask)
  assert loss_bf16.dtype == jnp.float32  # computed in float32 whatever the prediction's dtype
  with pytest.raises(ValueError, match="must be"):
    ans.flow_matching_loss(v_pred, target, mask[:, :3])


def test_pure_function_of_key():
  latents = jnp.ones((4, 3, 1, 1, 2))
  a = ans.training_example(jax.random.key(7), latents, None)
  b = ans.training_example(jax.random.key(7), latents, None)
  c = ans.training_example(jax.random.key(8), latents, None)
  assert a["speech"] is None
  jax.tree.map(np.testing.assert_array_equal, {k: v for k, v in a.items() if v is not None},
               {k: v for k, v in b.items() if v is not None})
  assert not np.array_equal(a["x"], c["x"])
  # Audio dropout applied later to the SpeechAE output (joint fine-tuning) uses the returned flag.
  speech = jnp.ones((4, 2, 2, 3))
  zeroed = ans.zero_where(speech, a["drop_audio"])
  np.testing.assert_array_equal(np.asarray(zeroed).reshape(4, -1).any(axis=1), ~np.asarray(a["drop_audio"]))


def test_bad_inputs_rejected():
  with pytest.raises(ValueError, match="p_sync"):
    ans.ANSConfig(p_sync=1.5)
  with pytest.raises(ValueError, match="sigma"):
    ans.ANSConfig(sigma=0.0)
  with pytest.raises(ValueError, match="num_frames=1"):
    ans.frame_timesteps(jax.random.key(0), 2, 1)
  with pytest.raises(ValueError, match="speech batch"):
    ans.training_example(jax.random.key(0), jnp.zeros((2, 3, 1, 1, 2)), jnp.zeros((3, 2, 2, 3)))
  assert dataclasses.is_dataclass(ans.ANSConfig) and hash(ans.ANSConfig()) == hash(ans.ANSConfig())
