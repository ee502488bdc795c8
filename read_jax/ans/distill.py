"""Distillation targets for the ANS sampler: guidance distillation, then progressive step distillation.

The teacher samples a clip with n Euler steps of Split CFG (Eq. 17): 3 denoiser rows per step. A student
learns to do the same with one row per step (guidance distillation, Meng et al. 2023) and then with half the
steps, round after round (progressive distillation, Salimans & Ho 2022): 8 → 4 → 2 → 1. Why these two and
not consistency distillation or DMD: ``docs/distillation.md``.

Everything is a pure function of (key, arrays) on batches of training clips ``[B, 1+f, h, w, C]`` (z_R first),
like :mod:`read_jax.ans.training`. A velocity function has the shape of the sampler's denoiser without the
params: ``velocity(x [B, 1+f, h, w, C], t [B, 1+f], speech [B, f, S, D], guidance [B, 2]) -> v`` like x.

Guidance distillation. The student S'(Z, C, z_R; α, β) is trained at the ANS forward process's per-frame
timesteps (:func:`read_jax.ans.training.frame_timesteps`, no condition dropout) to match the teacher's
guided velocity (1−α−β)·S(Z, ∅) + α·S(Z, ∅_C, z_R) + β·S(Z, C, z_R) (:func:`read_jax.ans.guidance.guided_velocity`
with cfg "split", the sampler's own), with (α, β) drawn per example.

Progressive distillation at the ANS's timesteps. A student of n steps (schedule T'_0 = 1 > … > T'_n = 0) is
trained against a teacher of 2n steps whose schedule holds T' and the midpoints T_m. One example is one
student step i of one clip, drawn uniformly, in one of the two situations of the reverse process
(:mod:`read_jax.ans.sampling`):

  * clip 0 (probability ``p_sync``): every frame at T'_i, t = [0, T'_i, …, T'_i], all f frames its own;
  * a later clip: its motion frame (frame 1) is the previous clip's last frame *already at the step's end*,
    so the student sees t = [0, T'_{i+1}, T'_i, …, T'_i]; the teacher's two substeps see it at T_m, then at
    T'_{i+1} (t = [0, T_m, T'_i, …] and [0, T'_{i+1}, T_m, …]). The frame is the forward process's
    (1 − t)·z_1 + t·ε_1 with one ε_1 for all three times; it is not the clip's to update.

The frames the clip owns start at Z(T'_i) = (1 − T'_i)·Z(0) + T'_i·ε; the teacher's two Euler substeps take
them to Z(T'_{i+1}), and the student's target velocity is the one that makes its single Euler step land
there: v* = (Z_teacher(T'_{i+1}) − Z(T'_i)) / (T'_{i+1} − T'_i). The substeps are the sampler's Euler step
(:func:`read_jax.ans.solvers.euler`); the loss is the masked MSE of training (:func:`read_jax.ans.training.
flow_matching_loss`) over the owned frames.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.ans import solvers

Velocity = Callable[..., jax.Array]


def sample_guidance(key, batch: int, alpha_range, beta_range) -> jax.Array:
  """(α, β) [B, 2] float32, each uniform on its ``(low, high)`` range (low = high: that value)."""
  (a0, a1), (b0, b1) = alpha_range, beta_range
  u = jax.random.uniform(key, (batch, 2), jnp.float32)
  return jnp.stack([a0 + (a1 - a0) * u[:, 0], b0 + (b1 - b0) * u[:, 1]], axis=-1)


def student_schedules(student_steps: int, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
  """(student schedule [n + 1], teacher schedule [2n + 1]): the teacher's even points are the student's."""
  coarse = solvers.timesteps(student_steps, shift)
  fine = solvers.timesteps(2 * student_steps, shift)
  if not np.allclose(fine[::2], coarse, atol=1e-6):
    raise AssertionError("the teacher's schedule does not contain the student's")  # linspace ⊂ linspace
  return coarse, fine


PATTERNS = ("clip", "causal")  # the reverse process a student step is drawn from (module docstring)


def progressive_example(key, latents, student_steps: int, *, shift: float = 1.0, p_sync: float = 0.5,
                        pattern: str = "clip") -> dict:
  """One student step per example (module docstring) from clean latents [B, 1+f, h, w, C] (z_R first).

  ``pattern="causal"``: the causal window's step (:mod:`read_jax.ans.causal`): the last frame alone is owned, at
  T'_i, after f − 1 clean context frames at t = 0 (what the cache holds), and no motion frame (``is_sync`` False).

  Returns a dict:
    x          [B, 1+f, h, w, C]  the student's input: owned frames at T'_i, the motion frame at T'_{i+1}
    t          [B, 1+f]           the student's per-frame timesteps (z_R at 0)
    motion_mid [B, h, w, C]       the motion frame at T_m (the teacher's first substep)
    t_a, t_m, t_b  [B]            T'_i, the midpoint, T'_{i+1}
    owned      [B, 1+f]           1 where the clip updates the frame (never z_R; not the motion frame of a later clip)
    motion     [B, 1+f]           the motion frame of a later clip (given, not updated)
    is_sync    [B]                True for clip 0
  """
  b, num_frames = latents.shape[:2]
  if num_frames < 3:
    raise ValueError(f"progressive_example: {num_frames} frames; need z_R and at least 2 latent frames")
  if pattern not in PATTERNS:
    raise ValueError(f"progressive_example: pattern {pattern!r} is not one of {PATTERNS}")
  coarse, fine = student_schedules(student_steps, shift)
  k_i, k_sync, k_noise = jax.random.split(key, 3)
  i = jax.random.randint(k_i, (b,), 0, student_steps)
  t_a, t_b = jnp.asarray(coarse)[i], jnp.asarray(coarse)[i + 1]
  t_m = jnp.asarray(fine)[2 * i + 1]
  is_sync = jax.random.bernoulli(k_sync, p_sync, (b,))
  frame = jnp.arange(num_frames)
  t_own = jnp.where(frame[None] == 0, 0.0, t_a[:, None])  # [B, 1+f]: z_R clean, the rest at T'_i
  if pattern == "causal":
    is_sync = jnp.zeros((b,), bool)
    t_own = jnp.where(frame[None] == num_frames - 1, t_a[:, None], 0.0)  # the context clean, the last at T'_i
  motion = (frame[None] == 1) & ~is_sync[:, None] & (pattern == "clip")  # [B, 1+f]
  # One ε per frame for every time (Eq. 13): the owned frames at T'_i, the motion frame at T_m and T'_{i+1}.
  z0 = latents.astype(jnp.float32)
  eps = jax.random.normal(k_noise, z0.shape, jnp.float32)
  def at(t):  # Z(t) per frame, t [B, 1+f]
    t = t.reshape(t.shape + (1,) * (z0.ndim - 2))
    return (1.0 - t) * z0 + t * eps

  t_student = jnp.where(motion, t_b[:, None], t_own)
  owned = ((frame[None] > 0) & ~motion).astype(jnp.float32)
  if pattern == "causal":
    owned = jnp.broadcast_to(frame[None] == num_frames - 1, (b, num_frames)).astype(jnp.float32)
  return dict(x=at(t_student), t=t_student, motion_mid=at(jnp.where(motion, t_m[:, None], t_own))[:, 1],
              t_a=t_a, t_m=t_m, t_b=t_b, owned=owned, motion=motion, is_sync=is_sync, x_a=at(t_own))


def progressive_target(velocity: Velocity, ex: dict, speech, guidance) -> jax.Array:
  """The teacher's two Euler substeps from ``ex`` (:func:`progressive_example`) as the student's target velocity.

  Returns v* [B, 1+f, h, w, C] float32: (Z_teacher(T'_{i+1}) − Z(T'_i)) / (T'_{i+1} − T'_i) on the owned
  frames, 0 elsewhere.
  """
  x, owned, motion = ex["x"], ex["owned"], ex["motion"]  # motion [B, 1+f]
  cast = lambda a: a.reshape(a.shape + (1,) * (x.ndim - a.ndim))  # noqa: E731  [B, 1+f] / [B] → broadcastable
  t_a, t_m, t_b = ex["t_a"], ex["t_m"], ex["t_b"]
  own = cast(owned)

  def substep(z, t_from, t_to, motion_at, motion_value):
    """One solver step (Euler: the sampler's own) of the owned frames from t_from to t_to, the motion frame at
    ``motion_at`` (it and z_R do not move)."""
    z = jnp.where(cast(motion), motion_value[:, None], z)
    t = jnp.where(motion, motion_at[:, None], jnp.where(owned > 0, t_from[:, None], 0.0))
    t_next = jnp.where(owned > 0, t_to[:, None], t)
    return solvers.euler(lambda x, t: velocity(x, t, speech, guidance).astype(jnp.float32), z, t, t_next)

  z = ex["x_a"]
  z = substep(z, t_a, t_m, t_m, ex["motion_mid"])
  z = substep(z, t_m, t_b, t_b, x[:, 1])
  return own * (z - ex["x_a"]) / cast(t_b - t_a)


__all__ = ["progressive_example", "progressive_target", "sample_guidance", "student_schedules"]
