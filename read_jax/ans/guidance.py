"""Classifier-free guidance for the A2V-DiT (paper §3.3, Eq. 16–17; Appendix C.4).

"∅" means zeroed z_R and zeroed C:
  joint (Eq. 16): v̂ = (1−α)·S(Z, ∅) + α·S(Z, C, z_R)                         rows [∅, full]
  split (Eq. 17): v̂ = (1−α−β)·S(Z, ∅) + α·S(Z, ∅_C, z_R) + β·S(Z, C, z_R)     rows [∅, ref, full]
  none:           v̂ = S(Z, C, z_R)                                            rows [full]
  distilled:      v̂ = S'(Z, C, z_R; α, β)                                     rows [full]
Paper defaults: joint α = 2; split α = 2, β = 6. "distilled" is a guidance-distilled student
(``docs/distillation.md``): (α, β) are its input and one pass stands for Split CFG's three branches;
its denoiser is called ``denoise([params,] x, t, speech, guidance [B, 2])``.

Every branch is stacked on the batch axis, so one guided velocity is one denoiser call, for one clip (the
sampler: :func:`clip_velocity`) or a batch of training clips with per-example (α, β) (the distillation targets):
:func:`guided_velocity` is the one implementation of Eq. 16–17.
"""

from __future__ import annotations

import jax.numpy as jnp

from read_jax.errors import ConfigError

CFG_MODES = ("split", "joint", "none", "distilled")
DEFAULT_GUIDANCE = {"split": (2.0, 6.0), "joint": (2.0, 0.0), "none": (1.0, 0.0), "distilled": (2.0, 6.0)}  # (α, β), C.4
BRANCHES = {"split": 3, "joint": 2, "none": 1, "distilled": 1}  # denoiser batch rows per guided velocity


def check_cfg(cfg: str) -> str:
  if cfg not in CFG_MODES:
    raise ConfigError(f"must be one of {CFG_MODES}", arg="cfg", value=cfg)
  return cfg


def guidance_scales(cfg: str, alpha: float | None = None, beta: float | None = None) -> jnp.ndarray:
  """``[α, β]`` float32 for the sampler: the paper's defaults (C.4) where a scale is None."""
  a0, b0 = DEFAULT_GUIDANCE[check_cfg(cfg)]
  return jnp.asarray([a0 if alpha is None else alpha, b0 if beta is None else beta], jnp.float32)


def guided_velocity(denoise, cfg: str, params, x, t, speech, guidance):
  """v̂ of Eq. 16/17 for a batch of clips: the CFG branches stacked on the batch axis, one denoiser call.

  x [B, 1+f, h, w, C] (x[:, 0] is z_R), t [B, 1+f], speech [B, f, S, D], guidance [B, 2] = (α, β) per example
  → v̂ [B, 1+f, h, w, C] float32 (the z_R slot is combined like the rest; it is conditioning, never a target).
  ``params`` (None: ``denoise`` takes none) comes first in the call, as a jit argument.
  """
  b = x.shape[0]
  x_null, speech_null = x.at[:, 0].set(0.0), jnp.zeros_like(speech)
  # Branch conditions (z_R, C): ∅ = (0, 0); ref = (z_R, 0); full = (z_R, C).
  xs, speeches = {
    "none": ([x], [speech]),
    "distilled": ([x], [speech]),
    "joint": ([x_null, x], [speech_null, speech]),
    "split": ([x_null, x, x], [speech_null, speech_null, speech]),
  }[check_cfg(cfg)]
  rows = len(xs)
  xb, sb = jnp.concatenate(xs), jnp.concatenate(speeches)  # [rows·B, …]
  tb = jnp.concatenate([t] * rows)
  args = (xb, tb, sb) if params is None else (params, xb, tb, sb)
  if cfg == "distilled":
    args = args + (jnp.asarray(guidance, jnp.float32),)
  v = denoise(*args)
  if v.shape != xb.shape:
    raise ValueError(f"denoise returned shape {v.shape}, expected {xb.shape} (the shape of x)")
  v = v.astype(jnp.float32)
  if rows == 1:
    return v
  scale = jnp.asarray(guidance, jnp.float32).reshape((b, 2) + (1,) * (x.ndim - 1))
  alpha, beta = scale[:, 0], scale[:, 1]  # [B, 1, 1, 1, 1]
  if cfg == "joint":  # Eq. 16
    return (1.0 - alpha) * v[:b] + alpha * v[b:]
  return (1.0 - alpha - beta) * v[:b] + alpha * v[b:2 * b] + beta * v[2 * b:]  # Eq. 17


def clip_velocity(denoise, cfg: str, params, x, t, z_ref, speech, guidance):
  """:func:`guided_velocity` of one clip in the sampler's layout: x [f, h, w, C] (no z_R), t [f] its frames' times,
  z_ref [h, w, C], speech [f, S, D], guidance [2] → v̂ [f, h, w, C] float32."""
  xb = jnp.concatenate([z_ref[None], x])[None]  # [1, 1+f, h, w, C]
  tb = jnp.concatenate([jnp.zeros((1,), t.dtype), t])[None]  # z_R at t = 0
  return guided_velocity(denoise, cfg, params, xb, tb, speech[None], jnp.asarray(guidance)[None])[0, 1:]
