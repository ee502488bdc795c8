"""The LTX-Video VAE port: parity with diffusers, full-size parameter counts, input checks, decode noise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict, unflatten_dict

from configs.vae_ltx import get_config
from read_jax.convert.vae import state_dict_to_variables
from read_jax.models.vae import (AutoencoderKLLTXVideo, inflate_image_params, make_config, motion_weights,
                                 training_loss)

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

VARIANTS = ("0.9.0", "0.9.1", "0.9.5")
# diffusers' parameter counts (parameters only; latents_mean/std are buffers), from models built on the meta device
FULL_PARAMS = {"0.9.0": 419_193_649, "0.9.1": 934_976_434, "0.9.5": 1_246_913_522}


def _rel(ours, ref):
  return float(np.linalg.norm(np.asarray(ours, np.float64) - ref) / np.linalg.norm(ref))


def _torch_vae(cfg, seed=0, noise_scales=False):
  """diffusers' model for ``cfg`` with every parameter and buffer random (not at its init value)."""
  torch.manual_seed(seed)
  ref = diffusers.AutoencoderKLLTXVideo(**{k: v for k, v in cfg.to_diffusers().items() if k != "_class_name"})
  with torch.no_grad():
    for name, p in ref.named_parameters():
      if "per_channel_scale" in name and not noise_scales:
        p.zero_()  # torch draws its injected noise from its own generator: parity needs it off
      elif name.endswith("timestep_scale_multiplier"):
        p.fill_(700.0)
      else:
        p.copy_(torch.randn_like(p) * 0.2 + (1.0 if name.endswith("norm3.weight") else 0.0))
    ref.latents_mean.copy_(torch.randn_like(ref.latents_mean))
    ref.latents_std.copy_(torch.rand_like(ref.latents_std) + 0.5)
  return ref.eval()


def _ncthw(x):
  return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def _nthwc(t):
  return np.moveaxis(t.detach().numpy(), 1, -1)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_parity_with_diffusers(variant):
  """encode (mean, logvar) and decode within 1e-5 relative error, T = 17, 64×96 frames."""
  cfg = make_config(get_config(f"{variant},tiny"))
  ref = _torch_vae(cfg)
  model = AutoencoderKLLTXVideo.from_config(cfg)
  variables = state_dict_to_variables(model, {k: v.numpy() for k, v in ref.state_dict().items()})
  batch = 2 if cfg.timestep_conditioning else 1  # two different timesteps in one batch
  x = np.random.RandomState(0).uniform(-1, 1, (batch, 17, 64, 96, 3)).astype(np.float32)
  post = jax.jit(lambda v, x: model.apply(v, x, method=model.encode))(variables, x)
  with torch.no_grad():
    tpost = ref.encode(_ncthw(x)).latent_dist
  assert post.mean.shape == (batch, 3, 2, 3, cfg.latent_channels)
  assert _rel(post.mean, _nthwc(tpost.mean)) < 1e-5
  assert _rel(post.logvar, _nthwc(tpost.logvar)) < 1e-5

  z = np.random.RandomState(1).randn(*post.mean.shape).astype(np.float32)
  t = np.array([0.05, 0.4][:batch], np.float32)
  out = jax.jit(lambda v, z, t: model.apply(v, z, t, method=model.decode))(variables, z, t)
  with torch.no_grad():
    tout = ref.decode(_ncthw(z), torch.from_numpy(t) if cfg.timestep_conditioning else None).sample
  assert out.shape == (batch, 17, 64, 96, 3)
  assert _rel(out, _nthwc(tout)) < 1e-5

  # latent normalisation as the LTX pipeline does it, with the checkpoint's per-channel statistics
  zn = model.apply(variables, z, method=model.normalize_latents)
  want = (_ncthw(z) - ref.latents_mean.view(1, -1, 1, 1, 1)) * cfg.scaling_factor / ref.latents_std.view(1, -1, 1, 1, 1)
  assert _rel(zn, _nthwc(want)) < 1e-6
  np.testing.assert_allclose(model.apply(variables, zn, method=model.denormalize_latents), z, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_full_size_parameter_counts(variant):
  cfg = make_config(get_config(variant))
  model = AutoencoderKLLTXVideo.from_config(cfg)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 9, 32, 32, 3))))
  n = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"]))
  with torch.device("meta"):
    ref = diffusers.AutoencoderKLLTXVideo(**{k: v for k, v in cfg.to_diffusers().items() if k != "_class_name"})
  assert n == sum(p.numel() for p in ref.parameters()) == FULL_PARAMS[variant]
  assert {k: a.shape for k, a in shapes["buffers"].items()} == {"latents_mean": (128,), "latents_std": (128,)}


@pytest.fixture(scope="module")
def tiny091():
  cfg = make_config(get_config("0.9.1,tiny"))
  model = AutoencoderKLLTXVideo.from_config(cfg)
  # torch's initialisation, converted: compiling model.init's many RNG calls takes far longer on CPU
  torch.manual_seed(0)
  ref = diffusers.AutoencoderKLLTXVideo(**{k: v for k, v in cfg.to_diffusers().items() if k != "_class_name"})
  return model, state_dict_to_variables(model, {k: v.detach().numpy() for k, v in ref.state_dict().items()})


@pytest.mark.slow
def test_inflate_image_params():
  """After inflation a single frame decodes as before, a still 9-frame video decodes to that frame at
  every time (before: the upsamplers' untrained slots draw other frames), and every conv's temporal
  taps are equal with their sum kept."""
  cfg = make_config(get_config("0.9.0,tiny"))
  model = AutoencoderKLLTXVideo.from_config(cfg)
  # An "rbg" key: XLA compiles the init ~6× faster than with threefry (read_jax/train/vae_stage.py).
  variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), jnp.zeros((1, 1, 32, 32, 3)))
  run = jax.jit(model.apply)  # encode, posterior mode, decode
  frame = np.random.RandomState(0).uniform(-1, 1, (1, 1, 32, 32, 3)).astype(np.float32)
  still = np.repeat(frame, 9, axis=1)
  inflated = {**variables, "params": inflate_image_params(variables["params"], cfg)}
  image = np.asarray(run(variables, frame))
  np.testing.assert_allclose(np.asarray(run(inflated, frame)), image, atol=1e-5)
  np.testing.assert_allclose(np.asarray(run(inflated, still)), np.repeat(image, 9, axis=1), atol=1e-4)
  assert np.abs(np.asarray(run(variables, still)) - image).max() > 1e-2
  before, after = flatten_dict(variables["params"]), flatten_dict(inflated["params"])
  taps = [k for k, v in before.items() if k[-1] == "kernel" and v.ndim == 5 and v.shape[0] > 1]
  assert len(taps) > 10
  for k in taps:
    np.testing.assert_array_equal(after[k], np.broadcast_to(after[k][:1], after[k].shape))
    if "upsamplers_0" not in k:  # (the upsamplers' first time slot is replaced: checked by the still video)
      np.testing.assert_allclose(after[k].sum(0), before[k].sum(0), rtol=1e-5, atol=1e-6)
  for other in ("0.9.1", "0.9.5"):  # parameter-free depth-to-space around the frames: refused
    with pytest.raises(ValueError, match="only 0.9.0-style blocks"):
      inflate_image_params(variables["params"], get_config(f"{other},tiny"))


@pytest.mark.slow
def test_motion_weighted_loss():
  """motion_weight weights the L1 of the pixels that change within a clip: a still clip's loss is the plain
  one; on a clip where one square flickers, the weights are 1 + w·|x − mean| scaled to mean 1, and the loss
  is the weighted mean of the reconstruction error (the reported l1 stays the plain mean)."""
  model = AutoencoderKLLTXVideo.from_config(make_config(get_config("0.9.0,tiny")))  # the demo VAE's blocks
  variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), jnp.zeros((1, 1, 32, 32, 3)))
  rng = np.random.RandomState(0)
  still = np.repeat(rng.uniform(-1, 1, (1, 1, 32, 32, 3)).astype(np.float32), 9, axis=1)
  moving = still.copy()
  moving[:, 1::2, 8:16, 8:16] = -moving[:, 1::2, 8:16, 8:16]  # a square that flips every other frame
  w = np.asarray(motion_weights(moving, 10.0))[..., 0]
  outside = np.ones(w.shape, bool)
  outside[:, :, 8:16, 8:16] = False
  m = np.abs(moving - moving.mean(1, keepdims=True)).mean(-1)
  np.testing.assert_allclose(w, (1 + 10 * m) / (1 + 10 * m).mean(), rtol=1e-5)
  assert np.ptp(w[outside]) < 1e-5 and w[~outside].mean() > 3 * w[outside].mean()
  np.testing.assert_allclose(np.asarray(motion_weights(still, 10.0)), 1.0, rtol=1e-6)

  @jax.jit
  def losses(x):  # (plain, weighted, reported l1, the reconstruction) in one program
    plain, m = training_loss(model, variables, x, None, kl_weight=0.0, sample_posterior=False)
    weighted, _ = training_loss(model, variables, x, None, kl_weight=0.0, sample_posterior=False, motion_weight=10.0)
    return plain, weighted, m["l1"], model.apply(variables, x)

  plain, weighted, l1, _ = map(np.asarray, losses(still))
  np.testing.assert_allclose([plain, weighted], l1, rtol=1e-5)
  plain, weighted, l1, y = map(np.asarray, losses(moving))
  err = np.abs(y - moving)
  np.testing.assert_allclose([plain, l1], err.mean(), rtol=1e-4)
  np.testing.assert_allclose(weighted, (w[..., None] * err).mean(), rtol=1e-4)
  assert abs(weighted - l1) > 1e-3 * l1


def test_input_checks(tiny091):
  model, variables = tiny091
  for shape, words in [((1, 16, 64, 96, 3), "T=16 must be 1 + 8k (nearest: 9 or 17)"),
                       ((1, 17, 50, 96, 3), "H=50 must be a multiple of 32 (nearest: 32 or 64)"),
                       ((1, 17, 64, 96, 4), "C=4 must be 3")]:
    with pytest.raises(ValueError, match=r"VAE encode") as e:
      model.apply(variables, jnp.zeros(shape), method=model.encode)
    assert words in str(e.value)
  with pytest.raises(ValueError, match="timestep-conditioned"):
    model.apply(variables, jnp.zeros((1, 2, 1, 1, 8)), method=model.decode)


def test_encoder_is_causal(tiny091):
  """Latent k depends on no frame after 8k: changing frames 10… leaves latents 0 and 1 unchanged."""
  model, variables = tiny091
  x = np.random.RandomState(0).uniform(-1, 1, (1, 17, 32, 32, 3)).astype(np.float32)
  y = x.copy()
  y[:, 9:] = np.random.RandomState(1).uniform(-1, 1, y[:, 9:].shape)
  enc = jax.jit(lambda v, x: model.apply(v, x, method=model.encode).mean)
  a, b = np.asarray(enc(variables, x)), np.asarray(enc(variables, y))
  np.testing.assert_allclose(a[:, :2], b[:, :2], atol=1e-6)
  assert np.abs(a[:, 2] - b[:, 2]).max() > 1e-3


@pytest.mark.slow
def test_decode_noise(tiny091):
  """decode_latents mixes z ← (1 − s)·z + s·ε (the LTX pipeline), ε drawn latent frame by latent frame from a
  key chain (what a stream draws: tests/test_vae_streaming.py); injected noise needs a key."""
  model, variables = tiny091
  z = np.random.RandomState(0).randn(1, 2, 1, 2, 8).astype(np.float32)
  key = jax.random.key(3)
  dec = jax.jit(lambda v, z, k=None: model.apply(v, z, 0.05, key=k, method=model.decode))
  # the per-channel noise scales start at zero: a key changes nothing until they are trained
  np.testing.assert_array_equal(dec(variables, z), dec(variables, z, key))
  flat = flatten_dict(variables["params"])
  flat = {k: (jnp.full_like(a, 0.5) if k[-1].startswith("per_channel_scale") else a) for k, a in flat.items()}
  noisy = {**variables, "params": unflatten_dict(flat)}
  assert np.abs(np.asarray(dec(noisy, z, key)) - np.asarray(dec(noisy, z))).max() > 1e-2
  # decode_latents: denormalise, mix noise with s = decode_noise_scale, decode at decode_timestep
  got = jax.jit(lambda v, z, k: model.apply(v, z, method=model.decode_latents, decode_timestep=0.05,
                                            decode_noise_scale=0.3, key=k))(variables, z, key)
  key2, chain = jax.random.split(key)
  eps = []
  for _ in range(z.shape[1]):
    chain, sub = jax.random.split(chain)
    eps.append(jax.random.normal(sub, z[:, :1].shape))
  zz = model.apply(variables, z, method=model.denormalize_latents)
  zz = 0.7 * zz + 0.3 * jnp.concatenate(eps, axis=1)
  np.testing.assert_allclose(got, dec(variables, zz, key2), atol=1e-5)
  with pytest.raises(ValueError, match="needs a key"):
    model.apply(variables, z, method=model.decode_latents, decode_timestep=0.05)
