"""Classifier-free guidance for the A2V-DiT (paper §3.3, Eq. 16–17; Appendix C.4).

"∅" means zeroed z_R and zeroed C:
  joint (Eq. 16): v̂ = (1−α)·S(Z, ∅) + α·S(Z, C, z_R)                         batch [∅, full]
  split (Eq. 17): v̂ = (1−α−β)·S(Z, ∅) + α·S(Z, ∅_C, z_R) + β·S(Z, C, z_R)     batch [∅, ref, full]
  none:           v̂ = S(Z, C, z_R)                                            batch [full]
  distilled:      v̂ = S'(Z, C, z_R; α, β)                                     batch [full]
Paper defaults: joint α = 2; split α = 2, β = 6. "distilled" is a guidance-distilled student
(``docs/distillation.md``): (α, β) are its input and one pass stands for Split CFG's three branches;
its denoiser is called ``denoise([params,] x, t, speech, guidance [B, 2])``.

Every branch is stacked on the batch axis, so one guided velocity is one denoiser call; the sampler
(:mod:`read_jax.ans.sampling`) calls :func:`guided_velocity` once per clip and step.
"""

from __future__ import annotations

import jax.numpy as jnp

CFG_MODES = ("split", "joint", "none", "distilled")
DEFAULT_GUIDANCE = {"split": (2.0, 6.0), "joint": (2.0, 0.0), "none": (1.0, 0.0), "distilled": (2.0, 6.0)}  # (α, β), C.4
BRANCHES = {"split": 3, "joint": 2, "none": 1, "distilled": 1}  # denoiser batch rows per guided velocity


def guidance_scales(cfg: str, alpha: float | None = None, beta: float | None = None) -> jnp.ndarray:
  """``[α, β]`` float32 for the sampler: the paper's defaults (C.4) where a scale is None."""
  if cfg not in CFG_MODES:
    raise ValueError(f"cfg: must be one of {CFG_MODES}, got {cfg!r}")
  a0, b0 = DEFAULT_GUIDANCE[cfg]
  return jnp.asarray([a0 if alpha is None else alpha, b0 if beta is None else beta], jnp.float32)


def guided_velocity(denoise, cfg, params, x, z_ref, speech, t, guidance):
  """v̂ of Eq. 16/17 for one clip: the CFG branches stacked on the batch axis, one denoiser call.

  x [f, h, w, C], z_ref [h, w, C], speech [f, S, D], t [1+f], guidance [2] = (α, β) → v̂ [f, h, w, C].
  """
  zr, zc = jnp.zeros_like(z_ref), jnp.zeros_like(speech)
  # Branch conditions (z_R, C): ∅ = (0, 0); ref = (z_R, 0); full = (z_R, C).
  refs, speeches = {
    "none": ([z_ref], [speech]),
    "joint": ([zr, z_ref], [zc, speech]),
    "split": ([zr, z_ref, z_ref], [zc, zc, speech]),
    "distilled": ([z_ref], [speech]),
  }[cfg]
  b = len(refs)
  xb = jnp.concatenate([jnp.stack(refs)[:, None], jnp.broadcast_to(x, (b,) + x.shape)], axis=1)  # [B, 1+f, h, w, C]
  tb = jnp.broadcast_to(t, (b,) + t.shape)  # [B, 1+f]
  sb = jnp.stack(speeches)  # [B, f, S, D]
  args = (xb, tb, sb) if params is None else (params, xb, tb, sb)
  if cfg == "distilled":
    args = args + (jnp.broadcast_to(jnp.asarray(guidance, jnp.float32), (b, 2)),)
  v = denoise(*args)
  if v.shape != xb.shape:
    raise ValueError(f"denoise returned shape {v.shape}, expected {xb.shape} (the shape of x)")
  v = v[:, 1:].astype(jnp.float32)  # the z_R slot is conditioning, not a target
  alpha, beta = guidance[0], guidance[1]
  if cfg in ("none", "distilled"):
    return v[0]
  if cfg == "joint":  # Eq. 16
    return (1.0 - alpha) * v[0] + alpha * v[1]
  return (1.0 - alpha - beta) * v[0] + alpha * v[1] + beta * v[2]  # Eq. 17
