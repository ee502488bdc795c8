"""3D convolution padded the way LTX-Video's VAE pads: replicate in time, zeros in space.

Time: a causal conv repeats the first frame ``kT − 1`` times in front, so output frame t sees no
input frame after t; a non-causal one repeats the first and last frames ``(kT − 1) // 2`` times at
each end. Space: ``k // 2`` zeros on each side (torch Conv3d ``padding=(0, kH//2, kW//2)``).

On the CPU the 3D convolution runs as ONE 2D convolution over frames, with the kT temporal taps
stacked into the input channels (XLA's CPU 3D convolution is several times slower than its 2D one:
forward 6×, forward + backward 2.4× on the VAE's shapes); elsewhere (cuDNN, TPU) as a 3D convolution.
Both give the same result up to float rounding. A single frame (T = 1: an image, the reference
frame, the first-frame warm-up of the demo VAE) is padded with copies of itself, so every temporal tap
reads the same frame: it runs as a 2D convolution with the taps summed, kT times cheaper, same result.

Parameter names follow diffusers' ``LTXVideoCausalConv3d`` (a wrapper holding an ``nn.Conv3d``
called ``conv``): ``<name>/conv/kernel`` ``[kT, kH, kW, I, O]`` and ``<name>/conv/bias`` ``[O]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def pad_time(x, kernel_t: int, causal: bool):
  """Replicate-pad axis 1 of ``x`` [B, T, H, W, C] for a temporal kernel of ``kernel_t`` taps."""
  if kernel_t == 1:
    return x
  if causal:
    left, right = kernel_t - 1, 0
  else:
    left = right = (kernel_t - 1) // 2
  parts = [jnp.repeat(x[:, :1], left, axis=1)] if left else []
  parts.append(x)
  if right:
    parts.append(jnp.repeat(x[:, -1:], right, axis=1))
  return jnp.concatenate(parts, axis=1)


class Conv3d(nn.Module):
  """Kernel and bias of a 3D convolution, applied to an already time-padded input; zero-pads space."""

  features: int  # output channels
  kernel_size: tuple[int, int, int]  # (kT, kH, kW)
  strides: tuple[int, int, int] = (1, 1, 1)  # (sT, sH, sW)
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x, one_frame: bool = False):  # x [B, T, H, W, C]
    """``one_frame``: x is a single frame standing for its kT replicate-padded copies."""
    kt, kh, kw = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (kt, kh, kw, x.shape[-1], self.features),
                         self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
    x = x.astype(self.dtype)
    if one_frame:  # the taps summed in the storage dtype, then cast
      y = _conv_2d(x[:, 0], kernel.sum(axis=0).astype(self.dtype), self.strides[1:])[:, None]
    elif jax.default_backend() == "cpu":
      y = _conv_taps_as_channels(x, kernel.astype(self.dtype), self.strides)
    else:
      y = _conv_3d(x, kernel.astype(self.dtype), self.strides)
    return y + bias.astype(self.dtype)  # [B, T', H', W', O]


def _conv_3d(x, kernel, strides):
  kh, kw = kernel.shape[1:3]
  return jax.lax.conv_general_dilated(
    x, kernel, window_strides=strides, padding=((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)),
    dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


def _conv_taps_as_channels(x, kernel, strides):
  """``_conv_3d`` as one 2D convolution: output frame t reads frames st·t + i (tap i) as channel block i."""
  kt, kh, kw, c, o = kernel.shape
  st = strides[0]
  b, frames = x.shape[:2]
  out_frames = (frames - kt) // st + 1
  taps = [x[:, i:i + st * (out_frames - 1) + 1:st] for i in range(kt)]  # each [B, T', H, W, C]
  x2 = jnp.concatenate(taps, axis=-1).reshape((b * out_frames,) + x.shape[2:4] + (kt * c,))
  k2 = jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kh, kw, kt * c, o)  # channel index = i·C + c
  y = _conv_2d(x2, k2, strides[1:])
  return y.reshape((b, out_frames) + y.shape[1:])


def _conv_2d(x, kernel, strides):  # x [N, H, W, C], kernel [kH, kW, C, O], zero-padded space
  kh, kw = kernel.shape[:2]
  return jax.lax.conv_general_dilated(x, kernel, window_strides=strides, padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


class CausalConv3d(nn.Module):
  """diffusers' LTXVideoCausalConv3d in channels-last layout."""

  features: int  # output channels
  kernel_size: int | Sequence[int] = 3  # one int for all three axes, or (kT, kH, kW)
  strides: int | Sequence[int] = 1  # one int for all three axes, or (sT, sH, sW)
  causal: bool = True  # replicate-pad the first frame only (see module docstring)
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):  # x [B, T, H, W, C]
    kernel = tuple(self.kernel_size) if isinstance(self.kernel_size, Sequence) else (self.kernel_size,) * 3
    strides = tuple(self.strides) if isinstance(self.strides, Sequence) else (self.strides,) * 3
    conv = Conv3d(self.features, kernel, strides, dtype=self.dtype, param_dtype=self.param_dtype, name="conv")
    if x.shape[1] == 1 and (self.causal or kernel[0] % 2):  # every tap reads the one frame
      return conv(x, one_frame=True)
    return conv(pad_time(x, kernel[0], self.causal))
