"""SpeechAE (§3.2, App. B.1): shapes, the F = 1 + 8k rule, causality by perturbation, Eq. 7–9 by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from read_jax.convert.torch_layout import flax_to_torch, torch_to_flax
from read_jax.models.speech_ae import SpeechAE, latent_stats, num_latents, speech_ae_loss, standardize_latents
from read_jax.nn.causal_conv1d import CausalConv1D

# Odd, distinct sizes so a swapped axis cannot pass by accident.
TINY = dict(feature_dim=7, window=3, hidden_dim=11, latent_tokens=2, latent_dim=5)


MODEL = SpeechAE(**TINY)


@pytest.fixture(scope="module")
def variables():
  """One set of tiny parameters (they do not depend on F).

  Drawn with numpy on the shapes from ``jax.eval_shape(init)``: compiling Flax's initializers costs
  ~10 s of CPU here, and these tests need non-trivial weights, not Flax's distribution.
  """
  s = jax.ShapeDtypeStruct((1, 9, TINY["window"], TINY["feature_dim"]), jnp.float32)
  shapes = jax.eval_shape(MODEL.init, jax.random.key(1), s)
  rng = np.random.default_rng(1)

  def draw(path, x):
    name = path[-1].key
    if name == "scale":
      return jnp.asarray(1.0 + 0.1 * rng.normal(size=x.shape), jnp.float32)
    fan_in = math.prod(x.shape[:-1]) if name == "kernel" else 10
    return jnp.asarray(rng.normal(size=x.shape) / math.sqrt(fan_in), jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def _speech(num_frames, batch=2, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, num_frames, TINY["window"], TINY["feature_dim"]))


_apply = jax.jit(lambda v, s: MODEL.apply(v, s))
_encode = jax.jit(lambda v, s: MODEL.apply(v, s, method="encode"))
_decode = jax.jit(lambda v, c: MODEL.apply(v, c, method="decode"))


@pytest.mark.parametrize("num_frames", [1, 9, 17, 25])
def test_shapes(variables, num_frames):
  s = jax.ShapeDtypeStruct((3, num_frames, 3, 7), jnp.float32)
  c, s_hat = jax.eval_shape(_apply, variables, s)
  f = (num_frames - 1) // 8 + 1
  assert c.shape == (3, f, 2, 5)
  assert s_hat.shape == s.shape
  assert jax.eval_shape(_decode, variables, c).shape == s.shape


def test_encode_decode_agree_with_call(variables):
  s = _speech(25)
  c, s_hat = _apply(variables, s)
  np.testing.assert_array_equal(_encode(variables, s), c)
  np.testing.assert_array_equal(_decode(variables, c), s_hat)
  assert np.isfinite(np.asarray(s_hat)).all() and np.abs(np.asarray(s_hat)).max() > 0


def test_first_frame_processed_on_its_own(variables):
  """Latent 0 is a function of frame 0 alone (F = 1 gives the same C_0 as F = 25), and Ŝ_0 of C_0 alone."""
  s = _speech(25)
  c = _encode(variables, s)
  np.testing.assert_allclose(_encode(variables, s[:, :1]), c[:, :1], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(_decode(variables, c[:, :1]), _decode(variables, c)[:, :1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("num_frames,hint", [(10, "F=9 or F=17"), (8, "F=1 or F=9"), (0, "F=1")])
def test_frames_not_one_plus_8k_rejected(variables, num_frames, hint):
  with pytest.raises(ValueError, match=hint):
    num_latents(num_frames)
  with pytest.raises(ValueError, match=hint):
    jax.eval_shape(_apply, variables, jax.ShapeDtypeStruct((1, num_frames, 3, 7), jnp.float32))


def test_wrong_window_shape_rejected(variables):
  with pytest.raises(ValueError, match=r"expected \[B, F, 3, 7\]"):
    jax.eval_shape(_apply, variables, jax.ShapeDtypeStruct((1, 9, 7, 3), jnp.float32))
  with pytest.raises(ValueError, match=r"expected \[B, f ≥ 1, 2, 5\]"):
    jax.eval_shape(_decode, variables, jax.ShapeDtypeStruct((1, 2, 5, 2), jnp.float32))


def test_encoder_causal_by_perturbation(variables):
  """Latent k (0-based) depends on frames 0 … 8k only: changing later frames leaves latents ≤ k as they were."""
  s = _speech(25)
  c = np.asarray(_encode(variables, s))
  for k in range(4):
    noise = jax.random.normal(jax.random.key(10 + k), s.shape)
    later = (jnp.arange(25) > 8 * k)[None, :, None, None]
    c2 = np.asarray(_encode(variables, jnp.where(later, s + noise, s)))
    np.testing.assert_array_equal(c2[:, :k + 1], c[:, :k + 1])
    if k < 3:  # the next latent does see frame 8k + 1
      assert np.abs(c2[:, k + 1] - c[:, k + 1]).min() > 0
  # The last frame of each group is read by its own latent (no frame is dropped by the strides).
  for k in range(1, 4):
    c3 = np.asarray(_encode(variables, s.at[:, 8 * k].add(1.0)))
    np.testing.assert_array_equal(c3[:, :k], c[:, :k])
    assert np.abs(c3[:, k] - c[:, k]).max() > 1e-4


def test_decoder_causal_by_perturbation(variables):
  """Reconstructed frame i depends on latents ≤ ceil(i/8) only (frame 0 on latent 0 alone)."""
  c = _encode(variables, _speech(25))
  s_hat = np.asarray(_decode(variables, c))
  noise = jax.random.normal(jax.random.key(5), c.shape)
  for k in range(3):
    later = (jnp.arange(4) > k)[None, :, None, None]
    s2 = np.asarray(_decode(variables, jnp.where(later, c + noise, c)))
    np.testing.assert_array_equal(s2[:, :8 * k + 1], s_hat[:, :8 * k + 1])
    assert np.abs(s2[:, 8 * k + 1] - s_hat[:, 8 * k + 1]).max() > 1e-4


def test_causal_conv1d_receptive_field():
  """Output m of a stride-s causal conv reads inputs s·m − (K − s) … s·m + s − 1 exactly."""
  x = jnp.eye(12)[:, :, None]  # [12, 12, 1]: example t has a single 1 at time t
  for k, stride in ((3, 2), (4, 2), (3, 1), (5, 3)):
    conv = CausalConv1D(1, k, stride=stride, use_bias=False)
    y = np.asarray(conv.apply({"params": {"conv": {"kernel": jnp.ones((k, 1, 1))}}}, x))[..., 0]
    for t in range(12):
      hit = {m for m in range(12 // stride) if stride * m - (k - stride) <= t <= stride * m + stride - 1}
      assert set(np.nonzero(y[t])[0]) == hit, (k, stride, t, y[t])
  with pytest.raises(ValueError, match="not a multiple of stride"):
    jax.eval_shape(CausalConv1D(1, 3, stride=2).init, jax.random.key(0), jnp.zeros((1, 5, 1)))
  with pytest.raises(ValueError, match="must be ≥ stride"):
    jax.eval_shape(CausalConv1D(1, 1, stride=2).init, jax.random.key(0), x)


def _numpy_loss(s, s_hat, alpha, beta, tau):
  """Eq. 7–9 with plain loops in float64; MSE is the mean over all elements."""
  s = np.asarray(s, np.float64)
  s_hat = np.asarray(s_hat, np.float64)
  b, f = s.shape[:2]
  mse = 0.0
  for idx in np.ndindex(s.shape):
    mse += (s[idx] - s_hat[idx]) ** 2
  mse /= s.size

  def cos(u, v):
    u, v = u.ravel(), v.ravel()
    return float(np.dot(u, v) / (math.sqrt(np.dot(u, u)) * math.sqrt(np.dot(v, v))))

  con = 0.0
  for n in range(b):
    for i in range(f):
      num = math.exp(cos(s_hat[n, i], s[n, i]) / tau)
      den = sum(math.exp(cos(s_hat[n, i], s[n, j]) / tau) for j in range(f) if j != i)
      con += -math.log(num / den)
  con /= b * f
  return alpha * mse + beta * con, mse, con


@pytest.mark.parametrize("alpha,beta,tau", [(10.0, 1.0, 0.1), (2.0, 3.0, 0.7), (10.0, 1.0, 0.005)])
def test_loss_matches_eq_7_to_9_by_hand(alpha, beta, tau):
  rng = np.random.default_rng(0)
  s = rng.normal(size=(2, 3, 2, 3)).astype(np.float32)  # B=2, F=3, Hw=2, DA=3
  s_hat = (s + 0.8 * rng.normal(size=s.shape)).astype(np.float32)
  loss, parts = speech_ae_loss(jnp.asarray(s), jnp.asarray(s_hat), alpha=alpha, beta=beta, temperature=tau)
  want, mse, con = _numpy_loss(s, s_hat, alpha, beta, tau)
  # τ = 0.005 puts logits near ±200: exp() would overflow float32 without the logsumexp.
  np.testing.assert_allclose(float(parts["mse"]), mse, rtol=1e-5)
  np.testing.assert_allclose(float(parts["contrastive"]), con, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5, atol=1e-4)


def test_loss_defaults_are_alpha_10_beta_1():
  rng = np.random.default_rng(1)
  s = rng.normal(size=(1, 4, 2, 3)).astype(np.float32)
  s_hat = rng.normal(size=s.shape).astype(np.float32)
  loss, parts = speech_ae_loss(s, s_hat, temperature=0.3)
  np.testing.assert_allclose(float(loss), 10 * float(parts["mse"]) + float(parts["contrastive"]), rtol=1e-6)
  np.testing.assert_allclose(float(loss), _numpy_loss(s, s_hat, 10.0, 1.0, 0.3)[0], rtol=1e-5)


def test_loss_rejects_bad_input():
  s = jnp.zeros((1, 1, 2, 3))
  with pytest.raises(ValueError, match="needs F ≥ 2"):
    speech_ae_loss(s, s)
  with pytest.raises(ValueError, match="must both be"):
    speech_ae_loss(jnp.zeros((1, 3, 2, 3)), jnp.zeros((1, 3, 3, 2)))


def test_full_size_parameter_count():
  """Paper size (DA=384, Hw=10, hw=2, dA=2048) with D=1024, K=3, by jax.eval_shape only."""
  model = SpeechAE()
  s = jax.ShapeDtypeStruct((1, 121, 10, 384), jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), s)
  count = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))
  d, k, i, o = 1024, 3, 10 * 384, 2 * 2048
  encoder = (i * d + d) + 3 * (d + k * d * d + d) + d + (d * o + o)
  decoder = (o * d + d) + 3 * (d + k * d * 2 * d + 2 * d) + d + (d * i + i)
  assert count == encoder + decoder == 44_591_872
  c, s_hat = jax.eval_shape(lambda v, x: model.apply(v, x), shapes, s)
  assert c.shape == (1, 16, 2, 2048) and s_hat.shape == (1, 121, 10, 384)


def test_torch_names_round_trip(variables):
  """Parameter names follow torch module paths, so the generic layout map round-trips exactly."""
  torch_sd = flax_to_torch(variables["params"])
  assert torch_sd["encoder.down_blocks.0.conv.conv.weight"].shape == (11, 11, 3)  # Conv1d [O, I, K]
  assert torch_sd["decoder.up_blocks.2.conv.conv.weight"].shape == (22, 11, 3)
  assert torch_sd["encoder.proj_in.weight"].shape == (11, 21)  # Linear [O, I]
  assert "decoder.norm_out.weight" in torch_sd
  back = torch_to_flax(torch_sd, variables["params"])
  jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, variables["params"]))


def test_matches_pytorch_reference(variables):
  """The documented torch equivalent (Conv1d after left pad, depth-to-space) computes the same Ŝ and C."""
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  s = _speech(25)
  c_jax, s_hat_jax = _apply(variables, s)
  sd = {k: torch.from_numpy(np.array(v)) for k, v in flax_to_torch(variables["params"]).items()}

  def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w

  def conv(x, prefix, stride):  # x [B, L, C]
    w = sd[prefix + ".conv.weight"]
    y = F.conv1d(F.pad(x.transpose(1, 2), (w.shape[-1] - stride, 0)), w, sd[prefix + ".conv.bias"], stride=stride)
    return y.transpose(1, 2)

  def linear(x, prefix):
    return F.linear(x, sd[prefix + ".weight"], sd[prefix + ".bias"])

  with torch.no_grad():
    x = torch.from_numpy(np.array(s))
    b, n = x.shape[:2]
    h = linear(x.reshape(b, n, -1), "encoder.proj_in")
    h = torch.cat([h[:, :1].repeat(1, 8, 1), h[:, 1:]], 1)
    for i in range(3):
      p = f"encoder.down_blocks.{i}"
      h = F.silu(conv(rms(h, sd[p + ".norm.weight"]), p + ".conv", 2))
    c = linear(rms(h, sd["encoder.norm_out.weight"]), "encoder.proj_out").reshape(b, -1, 2, 5)
    h = linear(c.reshape(b, c.shape[1], -1), "decoder.proj_in")
    for i in range(3):
      p = f"decoder.up_blocks.{i}"
      h = F.silu(conv(rms(h, sd[p + ".norm.weight"]), p + ".conv", 1))
      h = h.reshape(b, 2 * h.shape[1], -1)
    h = h[:, 7:]
    s_hat = linear(rms(h, sd["decoder.norm_out.weight"]), "decoder.proj_out").reshape(b, n, 3, 7)
  np.testing.assert_allclose(np.asarray(c_jax), c.numpy(), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(s_hat_jax), s_hat.numpy(), rtol=1e-5, atol=1e-5)


def test_bfloat16_compute(variables):
  """bf16 compute with float32 parameters; the loss stays float32 and Ŝ stays close to the float32 one."""
  model = SpeechAE(**TINY, dtype=jnp.bfloat16)
  s = _speech(25)
  c, s_hat = jax.jit(lambda v, x: model.apply(v, x))(variables, s)
  _, s_hat32 = _apply(variables, s)
  assert c.dtype == jnp.bfloat16
  err = np.linalg.norm(np.asarray(s_hat, np.float32) - np.asarray(s_hat32)) / np.linalg.norm(np.asarray(s_hat32))
  assert err < 0.05, err
  loss, parts = speech_ae_loss(s, s_hat)
  assert loss.dtype == jnp.float32 and parts["contrastive"].dtype == jnp.float32


def test_loss_gradient_matches_finite_differences():
  """The masked logsumexp (j ≠ i) has finite, correct gradients (a -inf entry must not leak NaN)."""
  rng = np.random.default_rng(2)
  s = jnp.asarray(rng.normal(size=(1, 3, 2, 3)), jnp.float32)
  s_hat = jnp.asarray(rng.normal(size=(1, 3, 2, 3)), jnp.float32)
  f = jax.jit(lambda x: speech_ae_loss(s, x, temperature=0.5)[0])
  g = np.asarray(jax.grad(f)(s_hat))
  assert np.isfinite(g).all()
  direction = jnp.asarray(rng.normal(size=s_hat.shape), jnp.float32)
  h = 1e-2
  fd = (float(f(s_hat + h * direction)) - float(f(s_hat - h * direction))) / (2 * h)
  np.testing.assert_allclose(float(np.sum(g * np.asarray(direction))), fd, rtol=2e-2)


@pytest.mark.slow
def test_standardize_latents(variables):
  """Folding (C − mean)/std into proj_out/proj_in: unit latents on the data the stats came from, the
  same reconstruction Ŝ, a constant element (std 0) divided by the floor, not by 0, bad stats refused."""
  params = variables["params"]
  rng = np.random.default_rng(3)
  # Speech with a large constant part: the latents are far from zero mean and unit scale.
  clips = [3.0 + 0.2 * rng.normal(size=(17, TINY["window"], TINY["feature_dim"])).astype(np.float32) for _ in range(6)]
  stats = latent_stats(MODEL, params, clips)
  assert stats["mean"].shape == stats["std"].shape == (TINY["latent_tokens"], TINY["latent_dim"])
  before = np.stack([np.asarray(MODEL.apply({"params": params}, jnp.asarray(c)[None])[0][0]) for c in clips])
  assert np.abs(before.mean((0, 1))).max() > 3 * before.std((0, 1)).min()  # the premise: offsets dominate
  new = standardize_latents(params, stats["mean"], stats["std"])
  c_new, s_new = zip(*[MODEL.apply({"params": new}, jnp.asarray(c)[None]) for c in clips])
  c_new = np.stack([np.asarray(c[0]) for c in c_new])  # [clips, f, hw, dA]
  np.testing.assert_allclose(c_new.mean((0, 1)), 0.0, atol=1e-4)
  np.testing.assert_allclose(c_new.std((0, 1)), 1.0, rtol=1e-3)
  np.testing.assert_allclose((before - stats["mean"]) / stats["std"], c_new, rtol=1e-4, atol=1e-4)
  for c, s in zip(clips, s_new):  # the decoder undoes it: the same Ŝ
    ref = MODEL.apply({"params": params}, jnp.asarray(c)[None])[1]
    np.testing.assert_allclose(np.asarray(s), np.asarray(ref), rtol=1e-4, atol=1e-4)
  # A constant element (std 0) is floored at 1e-3 of the largest std: centred, finite.
  std0 = stats["std"].copy()
  std0[0, 0] = 0.0
  floored = standardize_latents(params, stats["mean"], std0)
  c0 = np.asarray(MODEL.apply({"params": floored}, jnp.asarray(clips[0])[None], method=SpeechAE.encode))
  floor = 1e-3 * stats["std"].max()
  np.testing.assert_allclose(c0[0, :, 0, 0], (before[0, :, 0, 0] - stats["mean"][0, 0]) / floor, rtol=1e-3, atol=1e-2)
  with pytest.raises(ValueError, match="hw·dA"):
    standardize_latents(params, stats["mean"][:1], stats["std"][:1])
  with pytest.raises(ValueError, match="finite"):
    standardize_latents(params, stats["mean"] * np.nan, stats["std"])
