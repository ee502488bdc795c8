"""The LTX-Video causal video VAE (diffusers' ``AutoencoderKLLTXVideo``), native Flax, channels-last.

Every variant diffusers' config expresses: 0.9.0 (plain decoder), 0.9.1 (timestep-conditioned
decoder, noise injection, residual depth-to-space upsampling, upsample factors), 0.9.5+ (the
``LTXVideo095DownBlock3D`` encoder blocks with conv / spatial / temporal / spatiotemporal
space-to-depth downsamplers); causal or non-causal encoder and decoder.

Pixels ``[B, T, H, W, C]`` in [-1, 1] with T = 1 + 8k and H, W multiples of 32 (the compression
ratios) ↔ latents ``[B, 1 + k, H/32, W/32, latent_channels]``: the first frame is compressed on its
own, every later latent stands for 8 frames (docs/design.md §2).

Submodules are named after diffusers' module paths (``encoder/down_blocks_0/resnets_1/conv1/conv``)
so read_jax.convert.torch_layout maps the weights with no key table. ``latents_mean`` and
``latents_std`` (diffusers buffers) live in a separate ``"buffers"`` collection: the variables are
``{"params": ..., "buffers": {"latents_mean", "latents_std"}}``, so ``params`` counts exactly what
diffusers counts as parameters.

Usage::

  model = AutoencoderKLLTXVideo.from_config(get_config("0.9.1"))
  posterior = model.apply(params, x, method=model.encode)         # DiagonalGaussian
  z = model.apply(params, posterior.mode(), method=model.normalize_latents)
  video = model.apply(params, z, method=model.decode_latents, decode_timestep=0.05, key=key)

Streaming decode (docs/design.md §3.10): a live session decodes one latent frame at a time, carrying each temporal
conv's last k − 1 inputs (and, for a non-causal decoder, the skip paths' frames still to be met) in an
explicit :class:`DecodeState`, so a step computes only the new frame: about one latent frame's share of a
window decode, one compiled shape after the first::

  state = stream_decode_init(model, batch, h, w, decode_timestep=0.05, key=key)   # per session
  for z in latents:                                    # z [B, 1, h, w, C] normalised, as decode_latents takes
    state, frames = stream_decode_step(model, params, state, z)    # frames [B, n, 32h, 32w, 3]: 8 per latent
  frames = stream_decode_flush(model, params, state)   # at the end: what a non-causal decoder held back

The frames over a stream are those of ``decode_latents`` on the whole video with the same key. A causal
decoder (``decoder_causal=True``) gives latent 0's frame at the first step and 8 frames per step after; a
non-causal one holds back its future receptive field, ``stream_lookahead(config)`` latent frames
(``stream_plan`` gives the counts in video frames too). ``causal_decoder_params`` starts a causal decoder's
fine-tune from a non-causal one (configs/demo_vae.py:causal, configs/vae_ltx_causal.py).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from read_jax.nn.causal_conv import CausalConv3d, stream_delay
from read_jax.nn.embeddings import TimestepEmbedding
from read_jax.nn.norms import rms_normalize

_RMS_EPS = 1e-8  # LTX's pixel-norm epsilon (diffusers RMSNorm(eps=1e-8, elementwise_affine=False))


# ----------------------------------------------------------------------------------------------
# Posterior


@flax.struct.dataclass
class DiagonalGaussian:
  """q(z | x) = N(mean, exp(logvar)); LTX's encoder predicts one log-variance shared by all channels."""

  mean: jax.Array  # [B, T, H, W, C]
  logvar: jax.Array  # [B, T, H, W, C], clamped to [-30, 20] as diffusers does

  @property
  def std(self):
    return jnp.exp(0.5 * self.logvar)

  @property
  def var(self):
    return jnp.exp(self.logvar)

  def mode(self):
    return self.mean

  def sample(self, key):
    return self.mean + self.std * jax.random.normal(key, self.mean.shape, self.mean.dtype)

  def kl(self):
    """KL(q ‖ N(0, I)) summed over all but the batch axis."""
    return 0.5 * jnp.sum(jnp.square(self.mean) + self.var - 1.0 - self.logvar, axis=tuple(range(1, self.mean.ndim)))


# ----------------------------------------------------------------------------------------------
# Layers


class TimestepEmbedder(nn.Module):
  """diffusers' PixArtAlphaCombinedTimestepSizeEmbeddings without size conditions: sinusoid → MLP, the MLP
  under "timestep_embedder" as in diffusers."""

  features: int  # output width
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, t):  # t [B]
    return TimestepEmbedding(self.features, logical_axes=False, dtype=self.dtype, param_dtype=self.param_dtype,
                             name="timestep_embedder")(t)  # [B, features]


def _pixel_norm(x):
  """RMS norm over channels, no learned scale (LTX's "pixel_norm"), in float32."""
  return rms_normalize(x, _RMS_EPS)


def _spatial_noise(key, x):
  """One N(0, 1) field per frame size [H, W], shared by batch, time and channels (as LTX injects it)."""
  return jax.random.normal(key, x.shape[2:4], jnp.float32)[None, None, :, :, None]


class ResnetBlock3d(nn.Module):
  """diffusers' LTXVideoResnetBlock3d: pixel-norm → (scale/shift) → SiLU → conv, twice, plus shortcut."""

  features: int  # output channels
  causal: bool = True  # causal time padding
  eps: float = 1e-6  # LayerNorm eps of the shortcut norm
  inject_noise: bool = False  # add per-channel-scaled spatial noise after each conv
  timestep_conditioning: bool = False  # per-block scale/shift table added to the timestep embedding
  stream: str = ""  # "" the whole video, else a streaming step (read_jax.nn.causal_conv.STREAM_MODES)
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x, temb=None, key=None):  # x [B, T, H, W, C], temb [B, 4·C] embedded timestep
    c_in = x.shape[-1]
    conv = lambda name, k=3: CausalConv3d(self.features, k, causal=self.causal, stream=self.stream,
                                          dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    skip = _delayed(self, x, 2 * stream_delay(3, self.causal))  # meets h, which went through two convs
    h = _pixel_norm(x)
    if self.timestep_conditioning:
      table = self.param("scale_shift_table", lambda k, s, d: jax.random.normal(k, s, d) / c_in ** 0.5, (4, c_in),
                         self.param_dtype)
      mod = temb.reshape(temb.shape[0], 4, -1).astype(jnp.float32) + table.astype(jnp.float32)[None]
      mod = mod[:, :, None, None, None, :]  # [B, 4, 1, 1, 1, C]
      shift1, scale1, shift2, scale2 = mod[:, 0], mod[:, 1], mod[:, 2], mod[:, 3]
      h = (h * (1 + scale1) + shift1).astype(self.dtype)
    h = conv("conv1")(nn.silu(h))
    if self.inject_noise:
      s1 = self.param("per_channel_scale1", nn.initializers.zeros, (c_in, 1, 1), self.param_dtype)
      s2 = self.param("per_channel_scale2", nn.initializers.zeros, (c_in, 1, 1), self.param_dtype)
      if key is not None:
        k1, k2 = jax.random.split(key)
        h = h + (_spatial_noise(k1, h) * s1[:, 0, 0]).astype(h.dtype)
    h = _pixel_norm(h)
    if self.timestep_conditioning:
      h = (h * (1 + scale2) + shift2).astype(self.dtype)
    h = conv("conv2")(nn.silu(h))
    if self.inject_noise and key is not None:
      h = h + (_spatial_noise(k2, h) * s2[:, 0, 0]).astype(h.dtype)
    if c_in != self.features:
      skip = nn.LayerNorm(epsilon=self.eps, use_fast_variance=False, dtype=jnp.float32,
                          param_dtype=self.param_dtype, name="norm3")(skip).astype(self.dtype)
      skip = conv("conv_shortcut", 1)(skip)
    return h + skip


def _space_to_depth(x, stride):
  """[B, T·s0, H·s1, W·s2, C] → [B, T, H, W, C·s0·s1·s2], channel index c·s0s1s2 + i·s1s2 + j·s2 + k."""
  b, t, h, w, c = x.shape
  s0, s1, s2 = stride
  x = x.reshape(b, t // s0, s0, h // s1, s1, w // s2, s2, c)
  x = x.transpose(0, 1, 3, 5, 7, 2, 4, 6)
  return x.reshape(b, t // s0, h // s1, w // s2, c * s0 * s1 * s2)


def _depth_to_space(x, stride):
  """Inverse of :func:`_space_to_depth`."""
  b, t, h, w, c = x.shape
  s0, s1, s2 = stride
  x = x.reshape(b, t, h, w, c // (s0 * s1 * s2), s0, s1, s2)
  x = x.transpose(0, 1, 5, 2, 6, 3, 7, 4)
  return x.reshape(b, t * s0, h * s1, w * s2, c // (s0 * s1 * s2))


class Downsampler3d(nn.Module):
  """diffusers' LTXVideoDownsampler3d (0.9.5): conv then space-to-depth, plus a channel-averaged residual."""

  features: int  # output channels
  stride: tuple[int, int, int]  # (sT, sH, sW)
  causal: bool = True  # causal time padding
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):  # x [B, T, H, W, C]
    s0 = self.stride[0]
    prod = int(np.prod(self.stride))
    # repeat the first s0 − 1 frames so 1 + s0·k frames fold to 1 + k
    x = jnp.concatenate([x[:, :s0 - 1], x], axis=1)
    group = x.shape[-1] * prod // self.features
    res = _space_to_depth(x, self.stride)
    res = res.reshape(*res.shape[:-1], self.features, group).mean(axis=-1)
    h = CausalConv3d(self.features // prod, 3, causal=self.causal, dtype=self.dtype, param_dtype=self.param_dtype,
                     name="conv")(x)
    return _space_to_depth(h, self.stride) + res  # [B, T/s0, H/s1, W/s2, features]


class Upsampler3d(nn.Module):
  """diffusers' LTXVideoUpsampler3d: conv then depth-to-space ×2 in T, H, W; drops the extra first frame."""

  stride: tuple[int, int, int] = (2, 2, 2)  # (sT, sH, sW)
  causal: bool = True  # causal time padding
  residual: bool = False  # add the depth-to-space of the input, channels tiled to match (0.9.1+)
  upscale_factor: int = 1  # the conv gives C·s0s1s2 / upscale_factor channels
  stream: str = ""  # "" the whole video, else a streaming step (read_jax.nn.causal_conv.STREAM_MODES)
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):  # x [B, T, H, W, C]
    prod = int(np.prod(self.stride))
    # The video's first frame unfolds to s0 frames of which the last is kept (1 + 8k frames ↔ 1 + k latents);
    # a stream drops them in its first step only.
    drop = self.stride[0] - 1 if self.stream in ("", "first") else 0
    c = x.shape[-1]
    h = CausalConv3d(c * prod // self.upscale_factor, 3, causal=self.causal, stream=self.stream, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="conv")(x)
    if self.stream == "first" and h.shape[1] == 0:
      raise ValueError("Upsampler3d: a stream's first step must unfold at least one frame (its first frame is "
                       "dropped once)")
    h = _depth_to_space(h, self.stride)[:, drop:]
    if self.residual:
      res = _depth_to_space(_delayed(self, x, stream_delay(3, self.causal)), self.stride)[:, drop:]
      res = jnp.tile(res, (1, 1, 1, 1, prod // self.upscale_factor))
      h = h + res
    return h  # [B, s0·T − s0 + 1 (a stream's later steps: s0·T), s1·H, s2·W, C·s0s1s2 / (upscale_factor·prod)]


def _split_keys(key, n):
  return [None] * n if key is None else list(jax.random.split(key, n))


def _delayed(module: nn.Module, x, delay: int):
  """``x`` [B, T, H, W, C] in a streaming step, delayed by ``delay`` frames to meet a path through non-causal
  convs, which lag their input by that much (read_jax.nn.causal_conv); the frames not yet met wait in the
  module's ``"cache"`` collection, variable ``delayed``. The whole video (``stream`` "") and causal paths
  (delay 0) pass through."""
  mode = module.stream
  if not mode or not delay:
    return x
  if mode == "first":
    if x.shape[1] < delay:
      raise ValueError(f"{type(module).__name__}: a stream's first step needs at least {delay} frames here")
    buf, keep = x, x.shape[1] - delay
  else:
    buf = jnp.concatenate([module.get_variable("cache", "delayed"), x], axis=1)
    keep = buf.shape[1] if mode == "last" else x.shape[1]
  if mode != "last":
    module.put_variable("cache", "delayed", buf[:, keep:])  # [B, delay, H, W, C]
  return buf[:, :keep]


class DownBlock3d(nn.Module):
  """diffusers' LTXVideoDownBlock3D and LTXVideo095DownBlock3D: resnets, a downsampler, a widening resnet."""

  features: int  # output channels
  num_layers: int  # resnets at the input width
  downsample: bool  # spatio_temporal_scale
  downsample_type: str = "conv"  # conv (stride-2 conv) | spatial | temporal | spatiotemporal
  ltx_095: bool = False  # 0.9.5 block: the downsampler widens, no conv_out resnet
  causal: bool = True  # causal time padding
  eps: float = 1e-6  # shortcut LayerNorm eps
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):  # x [B, T, H, W, C]
    c_in = x.shape[-1]
    kw = dict(causal=self.causal, dtype=self.dtype, param_dtype=self.param_dtype)
    for i in range(self.num_layers):
      x = ResnetBlock3d(c_in, eps=self.eps, name=f"resnets_{i}", **kw)(x)
    if self.downsample:
      if self.downsample_type == "conv":
        x = CausalConv3d(c_in, 3, strides=2, name="downsamplers_0", **kw)(x)
      else:
        stride = {"spatial": (1, 2, 2), "temporal": (2, 1, 1), "spatiotemporal": (2, 2, 2)}[self.downsample_type]
        x = Downsampler3d(self.features, stride, name="downsamplers_0", **kw)(x)
    if not self.ltx_095 and c_in != self.features:
      x = ResnetBlock3d(self.features, eps=self.eps, name="conv_out", **kw)(x)
    return x


class MidBlock3d(nn.Module):
  """diffusers' LTXVideoMidBlock3d: resnets, optionally timestep-conditioned with their own embedder."""

  num_layers: int  # resnets
  causal: bool = True  # causal time padding
  eps: float = 1e-6  # shortcut LayerNorm eps
  inject_noise: bool = False  # spatial noise in the resnets
  timestep_conditioning: bool = False  # scale/shift from the timestep
  stream: str = ""  # "" the whole video, else a streaming step (read_jax.nn.causal_conv.STREAM_MODES)
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x, t=None, key=None):  # x [B, T, H, W, C], t [B] scaled timestep
    c = x.shape[-1]
    temb = None
    if self.timestep_conditioning:
      temb = TimestepEmbedder(4 * c, dtype=self.dtype, param_dtype=self.param_dtype, name="time_embedder")(t)
    for i, k in enumerate(_split_keys(key, self.num_layers)):
      x = ResnetBlock3d(c, causal=self.causal, eps=self.eps, inject_noise=self.inject_noise,
                        timestep_conditioning=self.timestep_conditioning, stream=self.stream, dtype=self.dtype,
                        param_dtype=self.param_dtype, name=f"resnets_{i}")(x, temb, k)
    return x


class UpBlock3d(nn.Module):
  """diffusers' LTXVideoUpBlock3d: a narrowing resnet, an upsampler, resnets."""

  in_features: int  # the block's nominal input width (its timestep embedder is 4× this)
  features: int  # output channels
  num_layers: int  # resnets at the output width
  upsample: bool  # spatio_temporal_scale
  causal: bool = False  # causal time padding
  eps: float = 1e-6  # shortcut LayerNorm eps
  inject_noise: bool = False  # spatial noise in the resnets
  timestep_conditioning: bool = False  # scale/shift from the timestep
  upsample_residual: bool = False  # residual depth-to-space around the upsampler
  upscale_factor: int = 1  # channel reduction of the upsampler
  stream: str = ""  # "" the whole video, else a streaming step (read_jax.nn.causal_conv.STREAM_MODES)
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x, t=None, key=None):  # x [B, T, H, W, C], t [B] scaled timestep
    kw = dict(causal=self.causal, stream=self.stream, dtype=self.dtype, param_dtype=self.param_dtype)
    keys = _split_keys(key, self.num_layers + 1)
    if self.in_features != self.features:
      x = ResnetBlock3d(self.features, eps=self.eps, inject_noise=self.inject_noise, name="conv_in", **kw)(
        x, None, keys[-1])
    temb = None
    if self.timestep_conditioning:
      temb = TimestepEmbedder(4 * self.in_features, dtype=self.dtype, param_dtype=self.param_dtype,
                              name="time_embedder")(t)
    if self.upsample:
      x = Upsampler3d((2, 2, 2), residual=self.upsample_residual, upscale_factor=self.upscale_factor,
                      name="upsamplers_0", **kw)(x)
    for i in range(self.num_layers):
      x = ResnetBlock3d(self.features, eps=self.eps, inject_noise=self.inject_noise,
                        timestep_conditioning=self.timestep_conditioning, name=f"resnets_{i}", **kw)(
        x, temb, keys[i])
    return x


# ----------------------------------------------------------------------------------------------
# Encoder / decoder


def _patchify(x, p: int, pt: int):
  """[B, T, H, W, C] → [B, T/pt, H/p, W/p, C·pt·p·p], channel index c·pt·p² + t·p² + w·p + h (LTX's order)."""
  b, t, h, w, c = x.shape
  x = x.reshape(b, t // pt, pt, h // p, p, w // p, p, c)
  x = x.transpose(0, 1, 3, 5, 7, 2, 6, 4)
  return x.reshape(b, t // pt, h // p, w // p, c * pt * p * p)


def _unpatchify(x, p: int, pt: int):
  """Inverse of :func:`_patchify`."""
  b, t, h, w, c = x.shape
  x = x.reshape(b, t, h, w, c // (pt * p * p), pt, p, p)  # [..., c, t, w, h]
  x = x.transpose(0, 1, 5, 2, 7, 3, 6, 4)
  return x.reshape(b, t * pt, h * p, w * p, c // (pt * p * p))


class Encoder3d(nn.Module):
  """diffusers' LTXVideoEncoder3d: pixels → [mean, shared log-variance] per latent pixel."""

  config: Any  # the VAE config (configs/vae_ltx.py)
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):  # x [B, T, H, W, C] pixels
    cfg = self.config
    kw = dict(causal=cfg.encoder_causal, dtype=self.dtype, param_dtype=self.param_dtype)
    x = _patchify(x.astype(self.dtype), cfg.patch_size, cfg.patch_size_t)
    channels = tuple(cfg.block_out_channels)
    ltx_095 = cfg.down_block_types[-1] == "LTXVideo095DownBlock3D"
    n_blocks = len(channels) - (1 if ltx_095 else 0)
    out = channels[0]
    x = CausalConv3d(out, 3, name="conv_in", **kw)(x)
    for i in range(n_blocks):
      if ltx_095:
        out = channels[i + 1]
      else:
        out = channels[i + 1] if i + 1 < n_blocks else channels[i]
      block_type = cfg.down_block_types[i]
      if block_type not in ("LTXVideoDownBlock3D", "LTXVideo095DownBlock3D"):
        raise ValueError(f"VAE config: unknown down_block_types[{i}] {block_type!r}")
      x = DownBlock3d(out, cfg.layers_per_block[i], cfg.spatio_temporal_scaling[i],
                      downsample_type=cfg.downsample_type[i] if block_type == "LTXVideo095DownBlock3D" else "conv",
                      ltx_095=block_type == "LTXVideo095DownBlock3D", eps=cfg.resnet_norm_eps,
                      name=f"down_blocks_{i}", **kw)(x)
    x = MidBlock3d(cfg.layers_per_block[-1], eps=cfg.resnet_norm_eps, name="mid_block", **kw)(x)
    x = nn.silu(_pixel_norm(x))
    x = CausalConv3d(cfg.latent_channels + 1, 3, name="conv_out", **kw)(x)
    return x  # [B, t, h, w, latent + 1]: latent means, then one log-variance


class Decoder3d(nn.Module):
  """diffusers' LTXVideoDecoder3d: latents (+ timestep) → pixels.

  ``stream`` "first" | "next" | "last" decodes a video a few latent frames at a time (:func:`stream_decode_step`):
  every temporal conv and every skip path around non-causal convs keeps what it needs of the frames before in
  the ``"cache"`` collection, so a step computes only the new frames. Everything else in the decoder is
  per frame (pixel norms, the timestep's scale/shift, the injected noise: one spatial field for all frames).
  """

  config: Any  # the VAE config (configs/vae_ltx.py)
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype
  stream: str = ""  # "" the whole video, else a streaming step (read_jax.nn.causal_conv.STREAM_MODES)

  @nn.compact
  def __call__(self, z, t=None, key=None):  # z [B, t, h, w, latent], t [B] decode timestep
    cfg = self.config
    if self.stream and cfg.patch_size_t != 1:
      raise ValueError(f"VAE config: streaming decodes patch_size_t=1 only, got {cfg.patch_size_t}")
    kw = dict(causal=cfg.decoder_causal, stream=self.stream, dtype=self.dtype, param_dtype=self.param_dtype)
    channels = tuple(reversed(cfg.decoder_block_out_channels))
    scaling = tuple(reversed(cfg.decoder_spatio_temporal_scaling))
    layers = tuple(reversed(cfg.decoder_layers_per_block))
    noise = tuple(reversed(cfg.decoder_inject_noise))
    residual = tuple(reversed(cfg.upsample_residual))
    factor = tuple(reversed(cfg.upsample_factor))
    cond = cfg.timestep_conditioning
    keys = _split_keys(key, len(channels) + 1)
    out = channels[0]
    x = CausalConv3d(out, 3, name="conv_in", **kw)(z.astype(self.dtype))
    if cond:
      if t is None:
        raise ValueError("VAE decode: this decoder is timestep-conditioned (0.9.1+); pass a timestep "
                         "(LTX decodes at decode_timestep, e.g. 0.05)")
      multiplier = self.param("timestep_scale_multiplier", nn.initializers.constant(1000.0), (), self.param_dtype)
      t = jnp.broadcast_to(jnp.asarray(t, jnp.float32).reshape(-1), (z.shape[0],)) * multiplier
    x = MidBlock3d(layers[0], eps=cfg.resnet_norm_eps, inject_noise=noise[0], timestep_conditioning=cond,
                   name="mid_block", **kw)(x, t, keys[0])
    for i in range(len(channels)):
      c_in = out // factor[i]
      out = channels[i] // factor[i]
      if cond and c_in != out:
        raise ValueError(f"VAE config: decoder up block {i} changes width ({c_in} → {out}) with "
                         "timestep_conditioning, which diffusers' LTXVideoUpBlock3d cannot run either")
      x = UpBlock3d(c_in, out, layers[i + 1], scaling[i], eps=cfg.resnet_norm_eps, inject_noise=noise[i + 1],
                    timestep_conditioning=cond, upsample_residual=residual[i], upscale_factor=factor[i],
                    name=f"up_blocks_{i}", **kw)(x, t, keys[i + 1])
    x = _pixel_norm(x)
    if cond:
      temb = TimestepEmbedder(2 * out, dtype=self.dtype, param_dtype=self.param_dtype, name="time_embedder")(t)
      table = self.param("scale_shift_table", lambda k, s, d: jax.random.normal(k, s, d) / out ** 0.5, (2, out),
                         self.param_dtype)
      mod = temb.reshape(-1, 2, out).astype(jnp.float32) + table.astype(jnp.float32)[None]
      shift, scale = mod[:, 0, None, None, None], mod[:, 1, None, None, None]  # [B, 1, 1, 1, C]
      x = (x * (1 + scale) + shift).astype(self.dtype)
    x = nn.silu(x)
    p, pt = cfg.patch_size, cfg.patch_size_t
    x = CausalConv3d(cfg.out_channels * p * p * pt, 3, name="conv_out", **kw)(x)
    return _unpatchify(x, p, pt)  # [B, T, H, W, out_channels]


# ----------------------------------------------------------------------------------------------
# The autoencoder


def compression_ratios(config) -> tuple[int, int]:
  """(spatial, temporal) pixels per latent, as diffusers computes them."""
  n = sum(bool(s) for s in config.spatio_temporal_scaling)
  spatial = config.spatial_compression_ratio or config.patch_size * 2 ** n
  temporal = config.temporal_compression_ratio or config.patch_size_t * 2 ** n
  return int(spatial), int(temporal)


def check_video_shape(shape, config, what: str = "VAE encode") -> None:
  """Raise one ValueError unless ``shape`` [B, T, H, W, C] has T = 1 + kt·k and H, W multiples of ks."""
  if len(shape) != 5:
    raise ValueError(f"{what}: expected a video [B, T, H, W, C], got shape {tuple(shape)}")
  _, t, h, w, c = shape
  ks, kt = compression_ratios(config)
  problems = []
  if c != config.in_channels:
    problems.append(f"C={c} must be {config.in_channels}")
  if t < 1 or (t - 1) % kt:
    lo = max(1, 1 + (t - 1) // kt * kt)
    problems.append(f"T={t} must be 1 + {kt}k (nearest: {lo} or {lo + kt})")
  for name, n in (("H", h), ("W", w)):
    if n < ks or n % ks:
      lo = max(ks, n // ks * ks)
      problems.append(f"{name}={n} must be a multiple of {ks} (nearest: {lo}" + (f" or {lo + ks})" if lo < n else ")"))
  if problems:
    raise ValueError(f"{what}: video shape {tuple(shape)} does not fit the VAE: " + "; ".join(problems))


class AutoencoderKLLTXVideo(nn.Module):
  """diffusers' AutoencoderKLLTXVideo, channels-last. ``config``: configs/vae_ltx.py (diffusers' keys)."""

  config: Any  # ConfigDict / dict with diffusers' AutoencoderKLLTXVideo config keys
  dtype: jnp.dtype = jnp.float32  # compute dtype (norms stay float32)
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @classmethod
  def from_config(cls, config: Mapping) -> "AutoencoderKLLTXVideo":
    """Build from a configs/vae_ltx.py ConfigDict or a diffusers config.json dict."""
    cfg = make_config(config)
    return cls(cfg, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype))

  def setup(self):
    c = self.config.latent_channels
    self.encoder = Encoder3d(self.config, self.dtype, self.param_dtype)
    self.decoder = Decoder3d(self.config, self.dtype, self.param_dtype)
    # diffusers buffers (checkpoint statistics, not trained): a separate "buffers" collection
    self._latents_mean = self.variable("buffers", "latents_mean", jnp.zeros, (c,), jnp.float32)
    self._latents_std = self.variable("buffers", "latents_std", jnp.ones, (c,), jnp.float32)

  def __call__(self, x, timestep=None, *, key=None):
    """Encode, take the mode, decode (used for init: creates every parameter)."""
    return self.decode(self.encode(x).mode(), timestep if timestep is not None else jnp.zeros((x.shape[0],)),
                       key=key)

  def encode(self, x) -> DiagonalGaussian:
    """x [B, T, H, W, C] pixels in [-1, 1], T = 1 + 8k, H, W multiples of 32 → posterior over latents."""
    check_video_shape(x.shape, self.config)
    h = self.encoder(x).astype(jnp.float32)
    c = self.config.latent_channels
    mean = h[..., :c]
    logvar = jnp.clip(jnp.broadcast_to(h[..., c:c + 1], mean.shape), -30.0, 20.0)
    return DiagonalGaussian(mean, logvar)

  def decode(self, z, timestep=None, *, key=None):
    """z [B, t, h, w, C] raw (un-normalised) latents → pixels [B, 1 + 8(t−1), 32h, 32w, 3].

    ``timestep`` (scalar or [B]) is required by timestep-conditioned decoders (0.9.1+) and ignored
    otherwise. ``key`` drives the decoder's noise injection (0.9.1); None injects no noise.
    """
    if z.ndim != 5 or z.shape[-1] != self.config.latent_channels:
      raise ValueError(f"VAE decode: expected latents [B, t, h, w, {self.config.latent_channels}], got {z.shape}")
    if not self.config.timestep_conditioning:
      timestep = None
    return self.decoder(z, timestep, key)

  def normalize_latents(self, z):
    """(z − mean) · scaling_factor / std per channel: what the diffusion model sees."""
    return (z - self._latents_mean.value) * self.config.scaling_factor / self._latents_std.value

  def denormalize_latents(self, z):
    return z * self._latents_std.value / self.config.scaling_factor + self._latents_mean.value

  def decode_latents(self, z, decode_timestep: float = 0.0, decode_noise_scale: float | None = None, *, key=None):
    """Decode normalised latents as the LTX pipeline does.

    Denormalise; for a timestep-conditioned decoder mix in noise, z ← (1 − s)·z + s·ε with
    s = ``decode_noise_scale`` (default: ``decode_timestep``), and decode at ``decode_timestep``.
    ``key`` (needed when s > 0) draws ε and the decoder's injected noise.
    """
    z = self.denormalize_latents(z)
    timestep = None
    if self.config.timestep_conditioning:
      s = decode_timestep if decode_noise_scale is None else decode_noise_scale
      if key is not None:
        key, sub = jax.random.split(key)
        z, _ = mix_latent_noise(z, s, sub)
      elif not (isinstance(s, (int, float)) and s == 0):
        raise ValueError("VAE decode_latents: a decode noise scale other than 0 needs a key to draw the noise")
      timestep = jnp.broadcast_to(jnp.asarray(decode_timestep, jnp.float32).reshape(-1), (z.shape[0],))
    return self.decode(z, timestep, key=key)


def mix_latent_noise(z, scale, key):
  """``(z ← (1 − s)·z + s·ε, the key after)`` for raw latents ``z`` [B, t, h, w, C], ``scale`` s (scalar or [B]).

  ε is drawn one latent frame at a time from a chain of keys (``key, sub = split(key)`` per frame), so that
  a stream decoding one frame per step (:func:`stream_decode_step`, which carries the key) draws the same ε
  as a decode of the whole video.
  """
  s = jnp.asarray(scale, jnp.float32).reshape(-1, 1, 1, 1, 1)
  eps = []
  for _ in range(z.shape[1]):
    key, sub = jax.random.split(key)
    eps.append(jax.random.normal(sub, z[:, :1].shape, z.dtype))
  if eps:
    z = (1 - s) * z + s * jnp.concatenate(eps, axis=1)
  return z, key


def unit_latent_stats(channels: int) -> dict[str, np.ndarray]:
  """The ``buffers`` of a VAE whose latents are not normalised (mean 0, std 1): a VAE before
  ``read_jax.train.vae_stage.latent_stats`` has measured its own."""
  return {"latents_mean": np.zeros((channels,), np.float32), "latents_std": np.ones((channels,), np.float32)}


def to_pixels(video):
  """uint8 frames → float32 in [−1, 1] (the VAE's input range)."""
  return jnp.asarray(video).astype(jnp.float32) / 127.5 - 1.0


def inflate_image_params(params, config):
  """VAE params trained on single frames only (1-frame clips), made ready to train on video.

  A single frame trains only part of what video uses:

  * every convolution runs on the frame repeated over its temporal taps (replicate padding), so
    only the sum of the taps is trained and each tap keeps its random initial offset from the
    others. On moving content those offsets do not cancel and add noise. Each tap is set to the mean
    of the taps, which keeps the sum (the image function) and makes a tap see its frame the way the
    image run saw every frame;
  * a temporal upsampler's conv emits ``C × (sT=2, sH, sW)`` channels and drops the first of the two
    frames they unfold to, so one latent frame decoded to one frame trains only the second slot.
    The trained slot is copied onto the untrained one.

  After this a still video decodes to the image run's frame at every time (before: every other frame
  is drawn by untrained weights), so video training starts from the image run's faces and has the
  motion left to learn. Parameters other than conv kernels and upsampler biases are
  returned as they are. ``config``: the model's (a VAEConfig or its keys). Only 0.9.0's blocks are
  covered: 0.9.1's residual upsamplers and 0.9.5's downsamplers fold frames into channels without
  parameters (depth-to-space), so a single frame cannot train them for video; they are refused.
  """
  config = config if isinstance(config, VAEConfig) else make_config(config)
  if "LTXVideo095DownBlock3D" in config.down_block_types or any(config.upsample_residual):
    raise ValueError("inflate_image_params: only 0.9.0-style blocks are covered (no LTXVideo095DownBlock3D, "
                     "no upsample_residual); train this VAE on video from the start")

  def inflate(path, x):
    names = [getattr(k, "key", None) for k in path]
    if names[-1] == "kernel" and x.ndim == 5 and x.shape[0] > 1:  # [kT, kH, kW, in, out]
      x = jnp.broadcast_to(jnp.mean(x, axis=0, keepdims=True), x.shape)
    if "upsamplers_0" in names and names[-1] in ("kernel", "bias"):
      y = x.reshape(*x.shape[:-1], -1, 2, 4)  # channels (C, sT, sH·sW): UpBlock3d's upsamplers are 2×2×2
      x = y.at[..., 0, :].set(y[..., 1, :]).reshape(x.shape)
    return x
  return jax.tree_util.tree_map_with_path(inflate, params)


def motion_weights(x: jax.Array, motion_weight: float) -> jax.Array:
  """Per-pixel L1 weights [B, T, H, W, 1] for clips ``x`` [B, T, H, W, C]: ``1 + motion_weight · m`` with m
  the channel mean of |x − x's mean over the clip's frames|, scaled to mean 1 over the batch (still clips: all 1)."""
  moving = jnp.mean(jnp.abs(x - jnp.mean(x, axis=1, keepdims=True)), axis=-1, keepdims=True)
  weight = 1.0 + motion_weight * moving
  return weight / jnp.mean(weight)


def training_loss(model: "AutoencoderKLLTXVideo", variables, x, key, *, kl_weight: float,
                  sample_posterior: bool = True, motion_weight: float = 0.0, decode_timestep: float = 0.0,
                  decode_noise_scale: float = 0.0, temporal_weight: float = 0.0) -> tuple[jax.Array, dict]:
  """``L1(decode(z), x) + kl_weight · KL(q(z | x) ‖ N(0, I))`` for pixels ``x`` [B, T, H, W, 3] in [−1, 1].

  L1 is the mean over pixels, KL the mean over latent elements; z is drawn from the posterior or
  (``sample_posterior=False``) is its mean. ``motion_weight`` > 0 weights each pixel's L1 by
  ``1 + motion_weight · |x − x's mean over the clip's frames|`` (``motion_weights``), so that what moves (a
  mouth, blinking eyes) counts more than the still background. A timestep-conditioned decoder (0.9.1+) decodes
  as the pipeline does (:meth:`AutoencoderKLLTXVideo.decode_latents`): at ``decode_timestep``, from
  z ← (1 − s)·z + s·ε with s = ``decode_noise_scale`` (ε from ``key``). ``temporal_weight`` > 0 adds that weight
  times the L1 of the frame-to-frame differences, ``|(y[t+1] − y[t]) − (x[t+1] − x[t])|``: a step between two
  frames that the target does not take (a causal decoder's jitter) costs on its own, not only through each
  frame's error. Returns ``(loss, {"l1", "kl", "psnr"})``: the plain L1 and the PSNR in dB of the clipped
  reconstruction (peak-to-peak 2).
  """
  posterior = model.apply(variables, x, method=AutoencoderKLLTXVideo.encode)
  z = posterior.sample(key) if sample_posterior else posterior.mode()
  timestep, z_dec = None, z
  if model.config.timestep_conditioning:
    timestep = jnp.full((x.shape[0],), decode_timestep, jnp.float32)
    if decode_noise_scale:
      z_dec, _ = mix_latent_noise(z, decode_noise_scale, jax.random.fold_in(key, 1))
  y = model.apply(variables, z_dec, timestep, method=AutoencoderKLLTXVideo.decode).astype(jnp.float32)
  fit, metrics = _reconstruction_fit(y, x, motion_weight, temporal_weight)
  kl = jnp.mean(posterior.kl()) / np.prod(z.shape[1:])  # kl() sums over each example: per latent element
  return fit + kl_weight * kl, {**metrics, "kl": kl}


def decoder_loss(model: "AutoencoderKLLTXVideo", variables, z, x, *, motion_weight: float = 0.0,
                 decode_timestep: float = 0.0, temporal_weight: float = 0.0) -> tuple[jax.Array, dict]:
  """The decoder's part of :func:`training_loss` on given latents: ``L1(decode(z), x)`` for (not normalised)
  latents z [B, t, h, w, C] and the pixels x [B, 1 + 8(t − 1), H, W, 3] in [−1, 1] they should decode to, which
  need not be the pixels they were encoded from (e.g. another decoder's frames of generated latents, to distil a
  causal decoder on what a live session decodes). ``motion_weight`` and ``temporal_weight`` as in
  :func:`training_loss`; a
  timestep-conditioned decoder decodes at ``decode_timestep``. Returns ``(loss, {"l1", "psnr", "kl"})`` (kl 0)."""
  timestep = jnp.full((z.shape[0],), decode_timestep, jnp.float32) if model.config.timestep_conditioning else None
  y = model.apply(variables, z, timestep, method=AutoencoderKLLTXVideo.decode).astype(jnp.float32)
  if y.shape != x.shape:
    raise ValueError(f"decoder_loss: latents {z.shape} decode to {y.shape}, the targets are {x.shape}")
  fit, metrics = _reconstruction_fit(y, x, motion_weight, temporal_weight)
  return fit, {**metrics, "kl": jnp.zeros(())}


def _reconstruction_fit(y, x, motion_weight: float, temporal_weight: float = 0.0):
  """(the motion-weighted L1 of y against x plus the weighted L1 of their frame differences, {"l1", "psnr"}):
  the fit of :func:`training_loss`."""
  err = jnp.abs(y - x)
  l1 = jnp.mean(err)
  fit = jnp.mean(motion_weights(x, motion_weight) * err) if motion_weight else l1
  if temporal_weight:
    fit = fit + temporal_weight * jnp.mean(jnp.abs(jnp.diff(y, axis=1) - jnp.diff(x, axis=1)))
  mse = jnp.mean(jnp.square(jnp.clip(y, -1, 1) - x))
  return fit, {"l1": l1, "psnr": 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10))}


# ----------------------------------------------------------------------------------------------
# Config handling


_CONFIG_KEYS = (
  "in_channels", "out_channels", "latent_channels", "block_out_channels", "down_block_types",
  "decoder_block_out_channels", "layers_per_block", "decoder_layers_per_block", "spatio_temporal_scaling",
  "decoder_spatio_temporal_scaling", "decoder_inject_noise", "downsample_type", "upsample_residual",
  "upsample_factor", "timestep_conditioning", "patch_size", "patch_size_t", "resnet_norm_eps", "scaling_factor",
  "encoder_causal", "decoder_causal", "spatial_compression_ratio", "temporal_compression_ratio")


@dataclasses.dataclass(frozen=True)
class VAEConfig:
  """Hashable, immutable VAE config (diffusers' keys), so the module can be a jit static argument."""

  in_channels: int = 3
  out_channels: int = 3
  latent_channels: int = 128
  block_out_channels: tuple = (128, 256, 512, 512)
  down_block_types: tuple = ("LTXVideoDownBlock3D",) * 4
  decoder_block_out_channels: tuple = (128, 256, 512, 512)
  layers_per_block: tuple = (4, 3, 3, 3, 4)
  decoder_layers_per_block: tuple = (4, 3, 3, 3, 4)
  spatio_temporal_scaling: tuple = (True, True, True, False)
  decoder_spatio_temporal_scaling: tuple = (True, True, True, False)
  decoder_inject_noise: tuple = (False, False, False, False, False)
  downsample_type: tuple = ("conv", "conv", "conv", "conv")
  upsample_residual: tuple = (False, False, False, False)
  upsample_factor: tuple = (1, 1, 1, 1)
  timestep_conditioning: bool = False
  patch_size: int = 4
  patch_size_t: int = 1
  resnet_norm_eps: float = 1e-6
  scaling_factor: float = 1.0
  encoder_causal: bool = True
  decoder_causal: bool = False
  spatial_compression_ratio: int | None = None
  temporal_compression_ratio: int | None = None
  dtype: str = "float32"
  param_dtype: str = "float32"

  def to_diffusers(self) -> dict:
    """The diffusers config.json dict (lists, no read_jax-only keys)."""
    out = {"_class_name": "AutoencoderKLLTXVideo"}
    for k in _CONFIG_KEYS:
      v = getattr(self, k)
      out[k] = list(v) if isinstance(v, tuple) else v
    return out


def make_config(config: Mapping) -> VAEConfig:
  """A VAEConfig from a configs/vae_ltx.py ConfigDict or a diffusers config.json dict; unknown keys are errors."""
  if isinstance(config, VAEConfig):
    return config
  items = dict(config.items() if hasattr(config, "items") else config)
  fields = {f.name for f in dataclasses.fields(VAEConfig)}
  unknown = sorted(k for k in items if k not in fields and not k.startswith("_"))
  if unknown:
    raise ValueError(f"VAE config: unknown keys {unknown} (known: {sorted(fields)})")
  kw = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in items.items() if k in fields}
  cfg = VAEConfig(**kw)
  n_enc = len(cfg.block_out_channels) - (1 if cfg.down_block_types[-1] == "LTXVideo095DownBlock3D" else 0)
  n_dec = len(cfg.decoder_block_out_channels)
  for name, n in (("layers_per_block", n_enc + 1), ("decoder_layers_per_block", n_dec + 1),
                  ("decoder_inject_noise", n_dec + 1)):
    if len(getattr(cfg, name)) < n:
      raise ValueError(f"VAE config: {name} has {len(getattr(cfg, name))} entries, needs {n}")
  for name, n in (("spatio_temporal_scaling", n_enc), ("down_block_types", n_enc), ("downsample_type", n_enc),
                  ("decoder_spatio_temporal_scaling", n_dec), ("upsample_residual", n_dec), ("upsample_factor", n_dec)):
    if len(getattr(cfg, name)) < n:
      raise ValueError(f"VAE config: {name} has {len(getattr(cfg, name))} entries, needs {n}")
  return cfg




# ----------------------------------------------------------------------------------------------
# Streaming decode


class StreamPlan(NamedTuple):
  """How a decoder streams (:func:`stream_plan`); frames counted as in the whole decode (latent 0 → frame 0,
  latent q ≥ 1 → frames 8q − 7 … 8q)."""

  prime_latents: int  # latent frames the first decoder step takes (1 for a causal decoder)
  prime_frames: int  # video frames that step gives (1 for a causal decoder); each later step gives 8
  lookahead: int  # latent frames held back: once latent q is in, all frames of latents ≤ q − lookahead are out
  lag_frames: int  # video frames held back: once latent q is in, frames ≤ 8q − lag_frames are out


@functools.lru_cache(maxsize=None)
def _stream_plan(cfg: "VAEConfig") -> StreamPlan:
  decoder = lambda stream: Decoder3d(cfg, stream=stream)  # noqa: E731
  t = jnp.zeros((1,), jnp.float32) if cfg.timestep_conditioning else None
  z = lambda n: jnp.zeros((1, n, 1, 1, cfg.latent_channels), jnp.float32)  # noqa: E731
  params = jax.eval_shape(decoder("").init, jax.random.key(0), z(2), t)["params"]
  _, kt = compression_ratios(cfg)

  def first(n):  # (frames, cache) shapes of a first step on n latent frames; None if a layer gets too few
    try:
      return jax.eval_shape(lambda p: decoder("first").apply({"params": p}, z(n), t, mutable=["cache"]), params)
    except ValueError:  # some layer has too few frames to pad its front or to meet its skip path
      return None

  hi = 1  # n fits iff n ≥ prime_latents: double, then bisect
  while first(hi) is None:
    if hi >= 1024:
      raise ValueError("VAE config: no first streaming step of up to 1024 latent frames fits this decoder")
    hi *= 2
  lo = hi // 2  # does not fit (or 0)
  while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (lo, mid) if first(mid) is not None else (mid, hi)
  out, cache = first(hi)
  step = jax.eval_shape(lambda p, c: decoder("next").apply({"params": p, **c}, z(1), t, mutable=["cache"])[0],
                        params, cache)
  if step.shape[1] != kt:
    raise ValueError(f"VAE config: a streaming step gives {step.shape[1]} frames per latent, not {kt}")
  e = out.shape[1]
  return StreamPlan(hi, e, (hi - 1) - (e - 1) // kt, kt * (hi - 1) - (e - 1))


def stream_plan(config) -> StreamPlan:
  """How the decoder of ``config`` (a VAEConfig or its keys) streams, from its structure: the fewest latent
  frames with which the first streaming step gives every layer the frames it needs, found by tracing that step
  (shapes only, nothing computed). A causal decoder: (1, 1, 0, 0). A non-causal one holds back its future
  receptive field: LTX-Video 0.9.1's decoder 31 latent frames (241 video frames, 9.6 s), the demo's 11."""
  return _stream_plan(make_config(config))


def stream_lookahead(config) -> int:
  """Latent frames a live stream holds back before the frames of a latent are out: 0 for a causal decoder,
  the future receptive field of a non-causal one (:class:`StreamPlan`)."""
  return stream_plan(config).lookahead


class DecodeState(NamedTuple):
  """One stream's carry between :func:`stream_decode_step` calls: a pytree, of fixed shapes once primed."""

  cache: Any  # the decoder's "cache" collection (each temporal conv's last kT − 1 inputs, each delayed skip's
  #             frames); None until the first decoder step
  pending: jax.Array  # [B, m, h, w, C] latents received before the first decoder step (m < prime_latents)
  timestep: jax.Array  # [B] decode timestep (timestep-conditioned decoders)
  noise_scale: jax.Array  # [B] s of z ← (1 − s)·z + s·ε (timestep-conditioned decoders)
  noise_key: jax.Array | None  # the next latent frame's ε (mix_latent_noise's key chain); None: no ε
  decoder_key: jax.Array | None  # the decoder's injected noise: the same spatial fields at every step


def stream_decode_init(module: "AutoencoderKLLTXVideo", batch: int, height: int, width: int, *,
                       decode_timestep=0.0, decode_noise_scale=None, key=None) -> DecodeState:
  """The state of a new stream of ``batch`` videos with latents ``height`` × ``width``; the decode settings
  and ``key`` as :meth:`AutoencoderKLLTXVideo.decode_latents` takes them (the same key gives the same
  frames as decoding the whole video)."""
  cfg = module.config
  s = decode_timestep if decode_noise_scale is None else decode_noise_scale
  decoder_key, noise_key = key, None
  if cfg.timestep_conditioning:
    if key is not None:
      decoder_key, noise_key = jax.random.split(key)
    elif not (isinstance(s, (int, float)) and s == 0):
      raise ValueError("VAE stream_decode_init: a decode noise scale other than 0 needs a key to draw the noise")
  per_row = lambda v: jnp.broadcast_to(jnp.asarray(v, jnp.float32).reshape(-1), (batch,))  # noqa: E731
  pending = jnp.zeros((batch, 0, height, width, cfg.latent_channels), jnp.float32)
  return DecodeState(None, pending, per_row(decode_timestep), per_row(s), noise_key, decoder_key)


def stream_decode_apply(variables, state: DecodeState, z, *, module: "AutoencoderKLLTXVideo", stream: str):
  """The pure function under :func:`stream_decode_step` (jit it with ``module`` and ``stream`` static; vmap or
  batch it over sessions): one decoder call on normalised latents ``z`` [B, n, h, w, C] → ``(state, frames)``.
  ``stream`` "first" primes a state of :func:`stream_decode_init` with ``prime_latents`` latent frames, "next"
  continues it (n frames → 8n), "last" flushes it (n = 0), "" decodes ``z`` as a whole video."""
  cfg = module.config
  z = module.apply(variables, z.astype(jnp.float32), method=module.denormalize_latents)
  noise_key = state.noise_key
  if noise_key is not None:
    z, noise_key = mix_latent_noise(z, state.noise_scale, noise_key)
  decoder = Decoder3d(cfg, module.dtype, module.param_dtype, stream=stream)
  cache = {} if state.cache is None else {"cache": state.cache}
  frames, mutated = decoder.apply({"params": variables["params"]["decoder"], **cache}, z,
                                  state.timestep if cfg.timestep_conditioning else None, state.decoder_key,
                                  mutable=["cache"])
  cache = state.cache if stream in ("", "last") else mutated["cache"]
  return state._replace(cache=cache, noise_key=noise_key), frames  # frames [B, n', 32h, 32w, 3]


_stream_jit = jax.jit(stream_decode_apply, static_argnames=("module", "stream"))


def _no_frames(module, state: DecodeState):
  b, _, h, w, _ = state.pending.shape
  ks, _ = compression_ratios(module.config)
  return jnp.zeros((b, 0, ks * h, ks * w, module.config.out_channels), jnp.float32)


def stream_decode_step(module: "AutoencoderKLLTXVideo", variables, state: DecodeState, z
                       ) -> tuple[DecodeState, jax.Array]:
  """Decode the next latent frame ``z`` [B, 1, h, w, C] (normalised, as :meth:`decode_latents` takes them)
  of a stream: ``(state, frames [B, n, 32h, 32w, 3])``, the video frames now final, in order.

  A causal decoder gives the frame of latent 0 at the first step, then 8 frames per latent (two compiled
  shapes). A non-causal one holds back its future receptive field: its first ``prime_latents`` steps keep the
  latents and give nothing, the next gives ``prime_frames`` frames, then 8 per step (:func:`stream_plan`). Over
  a stream (and :func:`stream_decode_flush`) the frames are those of decoding the whole video at once.
  """
  plan = stream_plan(module.config)
  if state.cache is not None:
    return _stream_jit(variables, state, z, module=module, stream="next")
  pending = jnp.concatenate([state.pending, jnp.asarray(z, jnp.float32)], axis=1)
  if pending.shape[1] < plan.prime_latents:
    state = state._replace(pending=pending)
    return state, _no_frames(module, state)
  return _stream_jit(variables, state._replace(pending=pending[:, :0]), pending, module=module, stream="first")


def stream_decode_flush(module: "AutoencoderKLLTXVideo", variables, state: DecodeState) -> jax.Array:
  """The frames a stream still holds back, as the whole video's decode ends it (its last frames padded
  forward): [B, n, 32h, 32w, 3], none for a causal decoder. The stream ends there."""
  if state.cache is None:  # shorter than the first step: the latents so far are the whole video
    if state.pending.shape[1] == 0:
      return _no_frames(module, state)
    return _stream_jit(variables, state, state.pending, module=module, stream="")[1]
  if stream_plan(module.config).lag_frames == 0:
    return _no_frames(module, state)
  return _stream_jit(variables, state, state.pending, module=module, stream="last")[1]


def narrow_decoder_params(params, shapes):
  """A trained VAE's params with the decoder cut to a smaller decoder's parameter ``shapes`` (a tree of arrays or
  ShapeDtypeStructs, e.g. ``jax.eval_shape`` of the smaller model's init): narrower blocks
  (``decoder_block_out_channels``) and fewer resnets per block (``decoder_layers_per_block``), the same blocks
  otherwise. Every decoder array of ``shapes`` is the trained array of the same name cut to its leading entries on
  each axis; the trained resnets past a block's new count are dropped. The encoder's params are returned as
  they are.

  The start of a smaller decoder distilled from the trained one (the live decoder's cheaper form, docs/demo.md):
  channel c of every layer keeps the trained layer's channel c. The upsamplers' depth-to-space reads channels as
  (c, sT, sH, sW), c outermost, so their leading outputs are whole channels too. The cut decoder draws little at
  first (its convs sum over part of their inputs); what it keeps are the trained one's features, which a
  fine-tune (``init_narrow_decoder`` in the VAE stage's configs) starts from.
  """
  def cut(path, shape):
    names = [getattr(k, "key", None) for k in path]
    if names[0] != "decoder":
      return _at(params, names)
    try:
      x = _at(params, names)
    except KeyError:
      raise ValueError(f"narrow_decoder_params: {jax.tree_util.keystr(path)} is not in the trained decoder (only "
                       "narrower blocks and fewer resnets can be cut from it)") from None
    if len(x.shape) != len(shape.shape) or any(a < b for a, b in zip(x.shape, shape.shape)):
      raise ValueError(f"narrow_decoder_params: {jax.tree_util.keystr(path)} {tuple(x.shape)} cannot be cut to "
                       f"{tuple(shape.shape)}")
    return x[tuple(slice(0, n) for n in shape.shape)]
  return jax.tree_util.tree_map_with_path(cut, shapes)


def _at(tree, names):
  for name in names:
    tree = tree[name]
  return tree


def causal_decoder_params(params, kernel_t: int = 3):
  """VAE params whose decoder is not causal, made ready to train as a causal one (``decoder_causal=True``).

  A non-causal temporal conv reads frames t − p … t + p (p = (kT − 1) / 2), a causal one t − kT + 1 … t. Each
  decoder conv's taps move onto the causal frames: the past taps stay on their frames, the future taps are
  added to the present one, the oldest causal taps start at zero. The sum of the taps is kept, so each conv
  answers a still input as before, and a decoder that draws still latents as a still video (a trained one
  nearly does) draws it as before; what the fine-tune (configs/demo_vae.py:causal) has to learn is to draw the
  motion from the past alone. The encoder's params are returned as they are.
  """
  p = (kernel_t - 1) // 2

  def move(path, x):
    names = [getattr(k, "key", None) for k in path]
    if names[0] != "decoder" or names[-1] != "kernel" or x.ndim != 5 or x.shape[0] != kernel_t:
      return x
    taps = [jnp.zeros_like(x[0])] * (kernel_t - 1 - p) + [x[i] for i in range(p)] + [x[p:].sum(axis=0)]
    return jnp.stack(taps)  # [kT, kH, kW, I, O], tap i reads frame t − (kT − 1) + i
  return jax.tree_util.tree_map_with_path(move, params)
