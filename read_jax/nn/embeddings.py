"""Timestep embeddings: the sinusoid and the two-layer MLP of DiT / PixArt-α (as LTX-Video uses them)."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def timestep_sinusoid(t, dim: int = 256, *, flip_sin_to_cos: bool = True, downscale_freq_shift: float = 0.0,
                      max_period: float = 10000.0):
  """``[...]`` timesteps → ``[..., dim]`` float32 sinusoids ``[cos, sin]`` (or ``[sin, cos]``).

  Frequencies ``exp(−log(max_period) · i / (dim/2 − shift))``, i < dim/2 (DDPM's embedding).
  """
  half = dim // 2
  exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - downscale_freq_shift)
  angles = t.astype(jnp.float32)[..., None] * jnp.exp(exponent)
  parts = [jnp.cos(angles), jnp.sin(angles)] if flip_sin_to_cos else [jnp.sin(angles), jnp.cos(angles)]
  emb = jnp.concatenate(parts, axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, [(0, 0)] * (emb.ndim - 1) + [(0, 1)])
  return emb


def dense(features: int, axes: tuple | None, *, dtype, param_dtype, name: str | None = None, kernel_init=None,
          use_bias: bool = True):
  """``nn.Dense`` whose kernel ([in, out]) and bias carry the logical axis names ``axes`` (None: plain params,
  for models that are not sharded by logical axes, e.g. the VAE)."""
  kernel_init = kernel_init or nn.initializers.lecun_normal()
  if axes is None:
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, kernel_init=kernel_init,
                    name=name)
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
                  kernel_init=nn.with_logical_partitioning(kernel_init, axes),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[-1:]), name=name)


class TimestepEmbedding(nn.Module):
  """sinusoid(t) → linear_1 → SiLU → linear_2 (diffusers ``TimestepEmbedding`` naming)."""

  features: int  # output width D
  in_channels: int = 256  # sinusoid width
  logical_axes: bool = True  # name the params' logical axes (False: plain params)
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, t):  # t [...] (already scaled, e.g. t·1000)
    emb = timestep_sinusoid(t, self.in_channels).astype(self.dtype)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    axes_1, axes_2 = (("time_freq", "mlp"), ("mlp", "embed")) if self.logical_axes else (None, None)
    h = dense(self.features, axes_1, name="linear_1", **kw)(emb)
    return dense(self.features, axes_2, name="linear_2", **kw)(jax.nn.silu(h))  # [..., D]
