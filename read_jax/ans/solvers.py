"""The sampler core: the schedule, the ODE solvers on per-frame times, and the :class:`Sampler` value.

Flow matching (§3.1): Z(t) = (1−t)·Z(0) + t·ε and the denoiser predicts v = ε − Z(0), so sampling integrates
dZ/dt = v from t = 1 to 0. Under ANS every frame has its own time (the motion frame one step ahead of its clip,
the rolling window's frames at staggered levels, a clean context frame at 0), so a solver step moves each frame
from its t to its t_next and leaves the frames whose time does not move bitwise as they are:

  euler   Z(t') = Z(t) + (t' − t)·v(Z, t)                                         Algorithm 1's update
  heun    Z̃ = Z(t) + (t' − t)·v(Z, t);  Z(t') = Z(t) + (t' − t)·½(v(Z, t) + v(Z̃, t'))   2nd order, 2 passes

The clip sampler (:mod:`read_jax.ans.sampling`), the rolling window (:mod:`read_jax.ans.rolling`) and the
distillation targets (:mod:`read_jax.ans.distill`) all step through :func:`step`. A new solver is a function
``(velocity, x, t, t_next) -> x_next`` and one line in :data:`SOLVERS`.

:class:`Sampler` is what every caller passes around (pipeline, live sessions, the serving engine, AOT, benches):
the schedule T_1 = 1 > … > T_{n+1} = 0, the CFG mode and its (α, β), the solver. It is a pytree: the schedule and
the scales are arrays (jit arguments: another α or shift compiles nothing), the mode and the solver static.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from read_jax.ans import guidance as guidance_lib
from read_jax.errors import ConfigError

DEFAULT_STEPS = 8  # paper C.4: "8-step sampling"

Velocity = Callable[[jax.Array, jax.Array], jax.Array]  # (x [..., T, h, w, C], t [..., T]) -> v like x


def _advance(x, t, t_next, v):
  """x + (t_next − t)·v on the frames whose time moves; the others bitwise as they are (``where``)."""
  dt = (t_next - t).reshape(t.shape + (1,) * (x.ndim - t.ndim))
  return jnp.where(dt != 0, x + dt * v, x)


def euler(velocity: Velocity, x, t, t_next):
  return _advance(x, t, t_next, velocity(x, t))


def heun(velocity: Velocity, x, t, t_next):
  v = velocity(x, t)
  v_next = velocity(_advance(x, t, t_next, v), t_next)
  return _advance(x, t, t_next, 0.5 * (v + v_next))


SOLVERS = {"euler": euler, "heun": heun}  # name → step(velocity, x, t, t_next)
EVALUATIONS = {"euler": 1, "heun": 2}  # denoiser passes per step


def check_solver(solver: str) -> str:
  if solver not in SOLVERS:
    raise ConfigError(f"must be one of {tuple(SOLVERS)}", arg="solver", value=solver)
  return solver


def step(solver: str, velocity: Velocity, x, t, t_next):
  """One step of ``solver`` moving x [..., T, h, w, C] from per-frame times t [..., T] to t_next."""
  return SOLVERS[check_solver(solver)](velocity, x, t, t_next)


def timesteps(steps: int = DEFAULT_STEPS, shift: float = 1.0, schedule=None) -> np.ndarray:
  """The schedule T_1 = 1 > … > T_{n+1} = 0 as float32 [steps + 1], linear with the SD3/LTX time shift
  T ↦ s·T / (1 + (s−1)·T) (s > 1 spends more steps at high noise).

  ``schedule``, when given, is used as is (after checks) and ``steps``/``shift`` are ignored.
  """
  if schedule is not None:
    t = np.asarray(schedule, dtype=np.float64)
    if t.ndim != 1 or t.size < 2:
      raise ConfigError(f"need a 1-D array of at least 2 timesteps, got shape {t.shape}", arg="schedule",
                        value=np.asarray(schedule).tolist())
    if not np.all(np.isfinite(t)) or t[0] != 1.0 or t[-1] != 0.0 or np.any(np.diff(t) >= 0):
      raise ConfigError("must start at 1, end at 0 and strictly decrease", arg="schedule", value=t.tolist())
    return t.astype(np.float32)
  if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
    raise ConfigError("need a positive integer", arg="steps", value=steps)
  if not (np.isfinite(shift) and shift > 0):
    raise ConfigError("need a positive number", arg="shift", value=shift)
  t = np.linspace(1.0, 0.0, steps + 1)
  t = shift * t / (1.0 + (shift - 1.0) * t)  # identity for shift = 1
  return t.astype(np.float32)


@flax.struct.dataclass
class Sampler:
  """How latents are sampled: schedule, CFG mode and scales, solver (module docstring). Build with :meth:`create`."""

  schedule: jax.Array  # [n + 1] float32: T_1 = 1 > … > T_{n+1} = 0
  guidance: jax.Array  # [2] float32: (α, β) of the CFG mode
  cfg: str = flax.struct.field(pytree_node=False)  # guidance.CFG_MODES
  solver: str = flax.struct.field(pytree_node=False)  # SOLVERS

  @classmethod
  def create(cls, *, steps: int = DEFAULT_STEPS, cfg: str = "split", alpha: float | None = None,
             beta: float | None = None, shift: float = 1.0, solver: str = "euler", schedule=None) -> "Sampler":
    """``steps`` linear steps with ``shift`` (or an explicit ``schedule``), ``cfg`` with (α, β) (the paper's
    defaults where None), ``solver``."""
    return cls(schedule=jnp.asarray(timesteps(steps, shift, schedule)),
               guidance=guidance_lib.guidance_scales(cfg, alpha, beta), cfg=cfg, solver=check_solver(solver))

  @property
  def steps(self) -> int:
    """n: solver steps per frame (the schedule's intervals)."""
    return self.schedule.shape[0] - 1

  @property
  def passes(self) -> int:
    """Denoiser passes per frame: steps × the solver's evaluations per step (rows per pass: guidance.BRANCHES)."""
    return self.steps * EVALUATIONS[self.solver]

  def velocity(self, denoise, params, z_ref, speech) -> Velocity:
    """The guided velocity of one clip (:func:`guidance.clip_velocity`) as the solver's ``velocity(x, t)``."""
    return lambda x, t: guidance_lib.clip_velocity(denoise, self.cfg, params, x, t, z_ref, speech, self.guidance)

  def step(self, velocity: Velocity, x, t, t_next):
    return step(self.solver, velocity, x, t, t_next)


__all__ = ["DEFAULT_STEPS", "EVALUATIONS", "SOLVERS", "Sampler", "check_solver", "euler", "heun", "step",
           "timesteps"]
