"""Streaming VAE decode (read_jax.models.vae: stream_decode_init / _step / _flush, stream_plan): one latent frame
at a time through the decoder's conv caches gives the whole video's decode; a non-causal decoder holds back exactly
its future receptive field; the causal fine-tune's starting params and stage options."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from configs.vae_ltx import get_config
from read_jax.config import load_config
from read_jax.convert.vae import export_vae
from read_jax.errors import CheckpointError
from read_jax.models import vae
from read_jax.models.vae import AutoencoderKLLTXVideo, make_config
from read_jax.train.export import init_vae_stats
from read_jax.train.vae_stage import VAEStage

VARIANTS = ("0.9.0", "0.9.1", "0.9.5")
B, T, H, W = 2, 11, 1, 3  # two videos (two decode timesteps) of 11 latent frames 1 × 3: 81 frames of 32 × 96
TIMESTEPS = np.array([0.05, 0.4], np.float32)


@pytest.fixture(autouse=True, scope="module")
def _quick_compiles():
  """Each program here is compiled for one tiny run: XLA's backend optimisations cost 3× the compile time and
  save nothing (the reference and the stream are compiled alike)."""
  before = jax.config.values["jax_disable_most_optimizations"]
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", before)


def _random_variables(model, seed=0):
  """Every parameter and buffer random (norm scales around 1, the noise-injection scales non-zero, so the
  injected noise shows), filled from shapes alone: nothing compiles."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 1, 32, 32, 3)), jnp.zeros((1,)))
  rng = np.random.RandomState(seed)

  def fill(path, s):
    name = getattr(path[-1], "key", "")
    if name == "timestep_scale_multiplier":
      return np.float32(700.0)
    if name == "latents_std":
      return (rng.rand(*s.shape) + 0.5).astype(np.float32)
    return ((1.0 if name == "scale" else 0.0) + 0.2 * rng.randn(*s.shape)).astype(np.float32)
  return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.lru_cache(maxsize=None)
def _whole_decode(model):
  """decode_latents of the whole video, jitted once per model (the noise scale traced: one compile for all)."""
  return jax.jit(lambda v, z, s, key: model.apply(v, z, TIMESTEPS, s, key=key, method=model.decode_latents))


def _stream(model, variables, z, scale, key):
  """(frames given at each step, the flushed tail, the carry's leaf shapes after each step)."""
  state = vae.stream_decode_init(model, B, H, W, decode_timestep=TIMESTEPS, decode_noise_scale=scale, key=key)
  frames, shapes = [], []
  for i in range(z.shape[1]):
    state, f = vae.stream_decode_step(model, variables, state, z[:, i:i + 1])
    frames.append(np.asarray(f))
    shapes.append(jax.tree.map(lambda a: a.shape, state))
  return frames, np.asarray(vae.stream_decode_flush(model, variables, state)), shapes


def _rel_max(got, want):
  return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_causal_stream_equals_whole_decode(variant):
  """A causal decoder streamed one latent frame at a time gives the whole decode of 11 latent frames: max |Δ| ≤ 1e-5
  of max |frame| in float32, with the decode noise of timestep-conditioned decoders on (z ← 0.7·z + 0.3·ε, the
  injected noise's scales non-zero). Latent 0 gives 1 frame, every later one 8; the carry keeps its shapes
  and after the first two steps nothing compiles."""
  cfg = make_config(get_config(f"{variant},tiny,decoder_causal=True"))
  model = AutoencoderKLLTXVideo.from_config(cfg)
  variables = _random_variables(model)
  z = np.random.RandomState(1).randn(B, T, H, W, cfg.latent_channels).astype(np.float32)
  key = jax.random.key(5, impl="rbg")  # rbg: the noise compiles several times faster on the CPU
  want = np.asarray(_whole_decode(model)(variables, z, 0.3, key))
  assert vae.stream_plan(cfg) == vae.StreamPlan(1, 1, 0, 0)
  state = vae.stream_decode_init(model, B, H, W, decode_timestep=TIMESTEPS, decode_noise_scale=0.3, key=key)
  frames, compiled = [], []
  for i in range(z.shape[1]):
    state, f = vae.stream_decode_step(model, variables, state, z[:, i:i + 1])
    frames.append(np.asarray(f))
    compiled.append(vae._stream_jit._cache_size())
  assert [f.shape[1] for f in frames] == [1] + [8] * (T - 1)
  assert compiled[1] == compiled[-1]
  assert vae.stream_decode_flush(model, variables, state).shape == (B, 0, 32 * H, 32 * W, 3)
  got = np.concatenate(frames, axis=1)
  assert got.shape == want.shape == (B, 1 + 8 * (T - 1), 32 * H, 32 * W, 3)
  assert _rel_max(got, want) <= 1e-5
  if cfg.timestep_conditioning:  # the test sees the noise: without it the frames differ
    assert _rel_max(np.asarray(_whole_decode(model)(variables, z, 0.0, key)), want) > 1e-3


@pytest.mark.slow
def test_noncausal_stream_holds_back_its_lookahead():
  """A non-causal decoder (LTX 0.9.1's blocks) streams exactly: its first prime_latents − 1 steps give nothing, the
  next prime_frames frames, then 8 per latent; the flush ends the video as the whole decode does, and all of it
  equals the whole decode (max |Δ| ≤ 1e-5 of max |frame|). The look-ahead is the decoder's future receptive field
  and no more: in the whole decode, latent q + lookahead moves the frames of latent q, latent q + lookahead + 1
  none of latents ≤ q."""
  cfg = make_config(get_config("0.9.1,tiny"))
  model = AutoencoderKLLTXVideo.from_config(cfg)
  variables = _random_variables(model)
  plan = vae.stream_plan(cfg)
  n, look = plan.prime_latents, plan.lookahead
  assert look > 0 and plan.lag_frames == 8 * (n - 1) - (plan.prime_frames - 1)
  t = T
  z = np.random.RandomState(1).randn(B, t, H, W, cfg.latent_channels).astype(np.float32)
  key = jax.random.key(5, impl="rbg")
  decode = _whole_decode(model)
  want = np.asarray(decode(variables, z, 0.3, key))
  frames, tail, shapes = _stream(model, variables, z, 0.3, key)
  assert [f.shape[1] for f in frames] == [0] * (n - 1) + [plan.prime_frames] + [8] * (t - n)
  assert shapes[n] == shapes[-1]
  got = np.concatenate(frames + [tail], axis=1)
  assert got.shape == want.shape == (B, 1 + 8 * (t - 1), 32 * H, 32 * W, 3)
  assert _rel_max(got, want) <= 1e-5

  q = t - look - 2  # latent q's frames are 8q − 7 … 8q
  moved = []
  for later in (q + look, q + look + 1):
    z2 = z.copy()
    z2[:, later] += 5.0
    moved.append(np.abs(np.asarray(decode(variables, z2, 0.3, key)) - want)[:, :8 * q + 1].max())
  assert moved[0] > 1e-6 * np.abs(want).max()  # (through the edge of the receptive field: small, not 0)
  assert moved[1] <= 1e-7 * np.abs(want).max()


def _future_reach(cfg) -> tuple[int, int]:
  """(look-ahead in latent frames, lag in video frames) of a non-causal decoder, walked back through its layers:
  each 3-tap conv reads one frame ahead at its own frame rate; a time upsampler's output frame j (its first frame
  dropped) comes from its input frame (j + 1) // 2. Derived here from the config, independently of the module."""
  channels = tuple(reversed(cfg.decoder_block_out_channels))
  layers = tuple(reversed(cfg.decoder_layers_per_block))
  scaling = tuple(reversed(cfg.decoder_spatio_temporal_scaling))
  factor = tuple(reversed(cfg.upsample_factor))
  ops = ["conv"] * (1 + 2 * layers[0])  # conv_in, the mid block's resnets
  out = channels[0]
  for i in range(len(channels)):
    c_in, out = out // factor[i], channels[i] // factor[i]
    ops += ["conv"] * (2 if c_in != out else 0) + (["conv", "up"] if scaling[i] else []) + ["conv"] * 2 * layers[i + 1]
  ops.append("conv")  # conv_out

  def needs(frame):  # the last latent frame that video frame `frame` reads
    for op in reversed(ops):
      frame = frame + 1 if op == "conv" else (frame + 1) // 2
    return frame
  q = 64  # past the start: a frame of latent q reads latents up to q + the look-ahead
  last_out = max(f for f in range(8 * q + 1) if needs(f) <= q)
  return needs(8 * q) - q, 8 * q - last_out


@pytest.mark.parametrize("spec", ["0.9.1,tiny", "demo"])
def test_lookahead_is_the_future_receptive_field(spec):
  """stream_plan's look-ahead (found by tracing the first streaming step) = the future receptive field counted
  from the config, for LTX 0.9.1's blocks and the demo's (0.9.0's); 0 once the decoder is causal."""
  fields = load_config("demo.py").vae.to_dict() if spec == "demo" else get_config(spec).to_dict()
  cfg = make_config(fields)
  plan = vae.stream_plan(cfg)
  assert (plan.lookahead, plan.lag_frames) == _future_reach(cfg)
  assert vae.stream_lookahead(make_config({**fields, "decoder_causal": True})) == 0


def test_causal_decoder_params_move_the_future_taps():
  """causal_decoder_params moves each decoder conv's taps [w₋, w₀, w₊] (frames t − 1, t, t + 1) to [0, w₋, w₀ + w₊]
  (frames t − 2, t − 1, t), keeping each conv's answer to a still input (the sum of its taps), and leaves the
  encoder, the 1-tap convs and everything else as they are."""
  model = AutoencoderKLLTXVideo.from_config(make_config(get_config("0.9.1,tiny")))
  variables = _random_variables(model)
  before = flatten_dict(variables["params"])
  after = flatten_dict(vae.causal_decoder_params(variables["params"]))
  taps = [k for k, a in before.items() if k[0] == "decoder" and k[-1] == "kernel" and a.shape[0] == 3]
  assert len(taps) > 10 and any(k[0] == "encoder" and k[-1] == "kernel" and a.shape[0] == 3 for k, a in before.items())
  for k, a in before.items():
    if k in taps:
      np.testing.assert_array_equal(after[k][0], 0)
      np.testing.assert_array_equal(after[k][1], a[0])
      np.testing.assert_allclose(after[k][2], a[1] + a[2], rtol=1e-6)
    else:
      np.testing.assert_array_equal(after[k], a)


def test_stage_fine_tunes_a_causal_decoder(tmp_path):
  """configs/demo_vae.py:causal's stage options: the encoder frozen (trainable: decoder only), the init checkpoint
  read from a VAE in diffusers layout with its decoder's taps moved for a causal decoder; a VAE of another
  config is refused by name."""
  config = load_config("demo_vae.py:causal")
  assert config.model.decoder_causal and config.freeze_encoder and config.init_causal_decoder
  stage = VAEStage(config)
  noncausal = AutoencoderKLLTXVideo.from_config({**config.model, "decoder_causal": False})
  variables = _random_variables(noncausal)
  export_vae(noncausal, variables, str(tmp_path / "vae"))
  fresh = jax.eval_shape(stage.init, jax.random.key(0), stage.batch_spec())
  params = stage.adapt_init_params(stage.init_from_checkpoint(str(tmp_path / "vae"), fresh))
  want = vae.causal_decoder_params(variables["params"])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), params, want)
  mask = stage.trainable(params)
  assert not any(jax.tree.leaves(mask["encoder"])) and all(jax.tree.leaves(mask["decoder"]))
  other = AutoencoderKLLTXVideo.from_config({**config.model, "latent_channels": 8})
  export_vae(other, _random_variables(other), str(tmp_path / "other"))
  with pytest.raises(CheckpointError, match="latent_channels"):
    stage.init_from_checkpoint(str(tmp_path / "other"), fresh)
  # Exported, the run keeps the init VAE's latent statistics (its encoder, hence its latents, did not change);
  # a run that trained its encoder has no such statistics to keep.
  config.init_checkpoint = str(tmp_path / "vae")
  kept = init_vae_stats(config)
  for name in ("latents_mean", "latents_std"):
    np.testing.assert_array_equal(kept[name], np.asarray(variables["buffers"][name]))
  config.freeze_encoder = False
  assert init_vae_stats(config) is None


def test_decoder_loss_on_given_latents():
  """The stage's decoder-only batches (latents + the frames they should decode to): the loss is training_loss's
  fit of the decoder (equal on the encoder's own latents of the same frames), with the config's weights; the
  frame-difference term is the L1 of the differences; a stage that trains its encoder refuses such batches."""
  config = load_config("demo_vae.py:causal,smoke")
  config.loss.temporal_weight = 4.0
  stage = VAEStage(config)
  model = stage.model
  variables = _random_variables(model)
  params = variables["params"]
  x = np.random.default_rng(0).integers(0, 256, (1, 9, 32, 32, 3), dtype=np.uint8)

  @jax.jit
  def losses(params, x):
    v = {"params": params, "buffers": stage.buffers}
    z = model.apply(v, vae.to_pixels(x), method=model.encode).mode()
    fit, m = vae.decoder_loss(model, v, z, vae.to_pixels(x), motion_weight=30.0)
    whole, _ = vae.training_loss(model, v, vae.to_pixels(x), None, kl_weight=0.0, sample_posterior=False,
                                 motion_weight=30.0)
    staged, _ = stage.loss_fn(params, {"latents": z, "video": x}, None)  # the config's weights: 30 and 4
    return z, fit, whole, m["psnr"], staged, model.apply(v, z, method=model.decode)

  z, fit, whole, psnr, staged, y = losses(params, x)
  np.testing.assert_allclose(fit, whole, rtol=1e-5)
  assert np.isfinite(psnr) and float(fit) > 0
  target = np.asarray(vae.to_pixels(x))
  steps = np.abs(np.diff(np.asarray(y), axis=1) - np.diff(target, axis=1)).mean()
  np.testing.assert_allclose(staged, fit + 4.0 * steps, rtol=1e-5)
  with pytest.raises(ValueError, match="decode to"):
    vae.decoder_loss(model, {"params": params, "buffers": stage.buffers}, z[:, :1], vae.to_pixels(x))
  config.freeze_encoder = False
  with pytest.raises(ValueError, match="freeze_encoder"):
    VAEStage(config).loss_fn(params, {"latents": z, "video": x}, None)


def test_pairs_batch_cuts_windows_of_latents_with_their_frames():
  """read_jax.demo.vae's windows for the live decoder: latent a's 8 frames end at frame 8a (latent 0: frame 0
  alone), so a window of k latents from a takes frames 8a … 8(a + k − 1): its first latent decodes, as a stream's
  first, to its last frame alone. The student's share of the rows follows student_fraction."""
  from read_jax.demo.vae import _pairs_batch

  def pair(T, tag):  # latent t holds t; frame i holds the latent it belongs to (and the pair's tag)
    z = np.broadcast_to(np.arange(T, dtype=np.float32)[:, None, None, None], (T, 1, 1, 2)).copy()
    owner = np.concatenate([[0], 1 + np.arange(8 * (T - 1)) // 8])
    frames = np.zeros((1 + 8 * (T - 1), 2, 2, 3), np.uint8)
    frames[..., 0], frames[..., 1] = owner[:, None, None], tag
    return z, frames

  pairs = [pair(7, 1), pair(9, 1), pair(12, 2), pair(6, 2)]  # two "real", two "student"
  rng = np.random.default_rng(0)
  for fraction, tags in ((0.0, {1}), (1.0, {2}), (0.5, {1, 2})):
    seen = set()
    for _ in range(20):
      b = _pairs_batch(pairs, rng, 4, 3, fraction, real=2)
      z, video = np.asarray(b["latents"]), np.asarray(b["video"])
      assert z.shape == (4, 3, 1, 1, 2) and video.shape == (4, 17, 2, 2, 3)
      for zz, vv in zip(z, video):
        a = int(zz[0, 0, 0, 0])
        np.testing.assert_array_equal(zz[:, 0, 0, 0], [a, a + 1, a + 2])
        np.testing.assert_array_equal(vv[:, 0, 0, 0], [a] + [a + 1] * 8 + [a + 2] * 8)
        seen.add(int(vv[0, 0, 0, 1]))
    assert seen == tags, fraction


def test_narrow_decoder_params_keep_the_leading_channels_and_resnets(tmp_path):
  """The live decoder's start: every decoder array of the smaller decoder (half the widths, no resnets in the
  full-resolution block) is the trained array cut to its leading entries, the resnets past a block's new count
  are dropped, the encoder is untouched; a decoder wider than the trained one cannot be cut. The VAE stage reads
  such an init only with init_narrow_decoder (else it names the differing keys)."""
  config = load_config("demo_vae.py:causal,smoke")
  wide = AutoencoderKLLTXVideo.from_config(config.model)
  variables = _random_variables(wide)
  live = load_config("vae_ltx_causal.py:live,tiny").model  # the full-size recipe's cut, on the tiny 0.9.1
  assert tuple(live.decoder_block_out_channels) == (4, 8, 16) and tuple(live.decoder_layers_per_block)[0] == 0
  small_fields = {"decoder_block_out_channels": [w // 2 for w in config.model.decoder_block_out_channels],
                  "decoder_layers_per_block": [0] + list(config.model.decoder_layers_per_block)[1:]}
  small = AutoencoderKLLTXVideo.from_config({**config.model, **small_fields})
  shapes = jax.eval_shape(small.init, jax.random.key(0), jnp.zeros((1, 1, 32, 32, 3)), jnp.zeros((1,)))["params"]
  cut = vae.narrow_decoder_params(variables["params"], shapes)
  wide_flat, cut_flat = flatten_dict(variables["params"]), flatten_dict(cut)
  assert jax.tree.map(lambda a: a.shape, cut) == jax.tree.map(lambda a: a.shape, shapes)
  assert any(k[0] == "decoder" and k not in cut_flat for k in wide_flat)  # the full-resolution block's resnets
  for k, a in cut_flat.items():
    want = wide_flat[k][tuple(slice(0, n) for n in a.shape)]
    np.testing.assert_array_equal(a, want)
    if k[0] == "encoder":
      assert a.shape == wide_flat[k].shape
  assert any(a.shape != wide_flat[k].shape for k, a in cut_flat.items() if k[0] == "decoder")
  wider = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables["params"])
  with pytest.raises(ValueError, match="cannot be cut|is not in the trained decoder"):
    vae.narrow_decoder_params(cut, wider)
  # The stage: the frozen encoder is the init's, the decoder its cut.
  export_vae(wide, variables, str(tmp_path / "vae"))
  config.model.update(small_fields)
  stage = VAEStage(config)
  fresh = jax.eval_shape(stage.init, jax.random.key(0), stage.batch_spec())
  with pytest.raises(CheckpointError, match="decoder_block_out_channels"):
    stage.init_from_checkpoint(str(tmp_path / "vae"), fresh)
  config.init_narrow_decoder = True
  config.init_causal_decoder = False  # (the smoke model's decoder is causal already)
  got = VAEStage(config).init_from_checkpoint(str(tmp_path / "vae"), fresh)
  jax.tree.map(np.testing.assert_array_equal, got, cut)
  export_vae(small, {**variables, "params": cut}, str(tmp_path / "small"))  # a wider decoder cannot come from it
  wide_config = load_config("demo_vae.py:causal,smoke")
  wide_config.init_narrow_decoder, wide_config.init_causal_decoder = True, False
  wide_stage = VAEStage(wide_config)
  with pytest.raises(CheckpointError, match="cannot be cut|is not in the trained decoder"):
    wide_stage.init_from_checkpoint(str(tmp_path / "small"),
                                    jax.eval_shape(wide_stage.init, jax.random.key(0), wide_stage.batch_spec()))


def test_anneal_ends_the_learning_rate_at_the_last_step():
  """train_demo_vae.py --anneal: the cosine's horizon is the run's --steps (a tenth of the peak at the last step);
  without it the horizon is far past any budget run (the rate nearly constant); --anneal needs a step count."""
  from read_jax.demo import vae as demo_vae
  from read_jax.errors import ConfigError
  from read_jax.train import optim
  lr = 1e-4
  annealed = optim.lr_schedule(demo_vae.demo_vae_config(batch=2, frames=17, lr=lr, schedule_steps=800).train)
  default = optim.lr_schedule(demo_vae.demo_vae_config(batch=2, frames=17, lr=lr).train)
  assert float(annealed(800)) == pytest.approx(lr / 10, rel=1e-3)
  assert float(annealed(410)) == pytest.approx(lr * 0.55, rel=1e-2)  # halfway down the cosine
  assert float(default(800)) > 0.999 * lr
  for kwargs in (dict(steps=0), dict(steps=20), dict(steps=100, image_minutes=1.0)):
    with pytest.raises(ConfigError, match="--anneal"):
      demo_vae.train_vae("/nonexistent", anneal=True, **kwargs)
