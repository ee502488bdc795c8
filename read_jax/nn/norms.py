"""Normalisation layers computed in float32 whatever the compute dtype."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def rms_normalize(x, eps: float, axis=-1):
  """x / rms(x) over ``axis``, in float32, cast back to x's dtype."""
  x32 = x.astype(jnp.float32)
  y = x32 * jnp.reciprocal(jnp.sqrt(jnp.mean(jnp.square(x32), axis=axis, keepdims=True) + eps))
  return y.astype(x.dtype)


class RMSNorm(nn.Module):
  """RMS norm over the last axis with an optional learned scale (torch.nn.RMSNorm semantics)."""

  eps: float = 1e-6  # added to the mean square
  use_scale: bool = True  # learned per-channel weight ("elementwise_affine")
  param_dtype: jnp.dtype = jnp.float32  # storage dtype of the scale

  @nn.compact
  def __call__(self, x):
    y = rms_normalize(x, self.eps)
    if self.use_scale:
      scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
      y = (y.astype(jnp.float32) * scale.astype(jnp.float32)).astype(x.dtype)
    return y
