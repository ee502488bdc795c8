"""3D rotary position embeddings over (frame, row, column), as LTX-Video defines them.

A token at latent grid position (f, y, x) gets the fractional coordinates
``(f·s_t / base_t, y·s_h / base_h, x·s_w / base_w)`` with LTX's base grid (20, 2048, 2048) and the
interpolation scale ``s = (vae_t / fps, vae_h, vae_w)`` (diffusers' ``rope_interpolation_scale``).
Each coordinate c ∈ [0, 1) is mapped to angles ``ω_i · (2c − 1)`` with ``dim // 6`` frequencies
``ω_i = θ^{i/(n−1)} · π/2``. The angles are interleaved frequency-major, axis-minor
(ω_0·f, ω_0·y, ω_0·x, ω_1·f, ...), each repeated for the two members of a rotated pair, and the
``dim % 6`` leftover channels at the front are not rotated (cos 1, sin 0). The rotation acts on
adjacent channel pairs (2i, 2i+1) of the full ``N·K`` query/key width, across heads, as LTX does.

Everything here is float32 and depends only on static shapes, so XLA folds it into constants.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


def ltx_coords(num_frames: int, height: int, width: int, *, scale=(8 / 25, 32.0, 32.0),
               base=(20.0, 2048.0, 2048.0)):
  """Fractional (frame, row, column) coordinates of every token, ``[T·H·W, 3]`` float32.

  Tokens are ordered frame-major then row then column, like ``x.reshape(B, T*H*W, C)``.
  """
  axes = []
  for n, s, b in zip((num_frames, height, width), scale, base):
    # Same float32 operation order as diffusers (index · scale, then / base), so angles agree to the ulp.
    axes.append(jnp.arange(n, dtype=jnp.float32) * jnp.float32(s) / jnp.float32(b))
  grid = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1)  # [T, H, W, 3]
  return grid.reshape(-1, 3)


def rope_cos_sin(coords, dim: int, theta: float = 10000.0):
  """cos/sin tables ``[L, dim]`` for ``coords`` ``[L, 3]`` (see the module docstring for the layout)."""
  n = dim // 6
  # θ ** linspace(0, 1, n) with linspace exactly as torch's float32 kernel computes it (first half
  # i·step, second half 1 − (n−1−i)·step, each a fused multiply-add of the float32 step: one rounding).
  # The power itself may differ from torch's by an ulp, i.e. angles by up to ~1e-3 rad at the highest
  # frequencies (θ·π/2 ≈ 1.6e4 rad): float32 noise, not a convention difference.
  i = np.arange(n, dtype=np.float64)
  step = np.float64(np.float32(1.0) / np.float32(max(n - 1, 1)))
  lin = np.where(i < n // 2, i * step, 1.0 - (n - 1 - i) * step).astype(np.float32)
  freqs = jnp.power(jnp.float32(theta), jnp.asarray(lin)) * jnp.float32(math.pi / 2.0)  # [n]
  angles = freqs[None, None, :] * (coords[:, :, None] * 2.0 - 1.0)  # [L, 3, n]
  angles = jnp.swapaxes(angles, 1, 2).reshape(coords.shape[0], 3 * n)  # [L, 3n], frequency-major
  cos = jnp.repeat(jnp.cos(angles), 2, axis=-1)
  sin = jnp.repeat(jnp.sin(angles), 2, axis=-1)
  pad = dim % 6
  if pad:
    cos = jnp.concatenate([jnp.ones((coords.shape[0], pad), jnp.float32), cos], axis=-1)
    sin = jnp.concatenate([jnp.zeros((coords.shape[0], pad), jnp.float32), sin], axis=-1)
  return cos, sin  # [L, dim] each


def apply_rope(x, cos, sin):
  """Rotate adjacent channel pairs of ``x`` ``[B, L, D]`` by the angles of ``cos``/``sin`` ``[L, D]``."""
  pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
  rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)  # (a, b) → (−b, a)
  return (x.astype(jnp.float32) * cos + rotated * sin).astype(x.dtype)
