"""3D convolution padded the way LTX-Video's VAE pads: replicate in time, zeros in space.

Time: a causal conv repeats the first frame ``kT − 1`` times in front, so output frame t sees no
input frame after t; a non-causal one repeats the first and last frames ``(kT − 1) // 2`` times at
each end. Space: ``k // 2`` zeros on each side (torch Conv3d ``padding=(0, kH//2, kW//2)``).

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
  def __call__(self, x):  # x [B, T, H, W, C]
    kt, kh, kw = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (kt, kh, kw, x.shape[-1], self.features),
                         self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
    y = jax.lax.conv_general_dilated(
      x, kernel, window_strides=self.strides,
      padding=((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)),
      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
    return y + bias.astype(self.dtype)  # [B, T', H', W', O]


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
    x = pad_time(x, kernel[0], self.causal)
    return Conv3d(self.features, kernel, strides, dtype=self.dtype, param_dtype=self.param_dtype, name="conv")(x)
