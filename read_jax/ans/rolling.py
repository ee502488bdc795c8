"""The rolling-window ANS sampler: one latent frame in, one out (diffusion-forcing style; docs/design.md §3.10).

The clip sampler (:mod:`read_jax.ans.sampling`) cannot start clip j before the audio of all its f latent frames
is in, so a live video lags the speech by a whole clip. The rolling window advances one latent frame (8 video
frames, 0.32 s) at a time instead:

  * The window holds f latent frames, the clip length the model was trained on (one compiled shape): positions
    0 … f − W − 1 are clean frames already handed out (the motion prior), f − W … f − 1 the W noisy ones,
    the newest last.
  * Advance q: the window shifts left by one, latent frame q enters at the end as pure noise
    ``normal(fold_in(key, q))`` with its speech latent, and S = steps / W Euler steps move every noisy frame one
    level down. The oldest noisy frame leaves clean, at position f − W, and is handed out.
  * A frame sees W·S = ``steps`` denoiser passes in all and is handed out W − 1 advances after it entered, so its
    latency is W − 1 latent frames (0.32 s each) plus the compute of one advance.

Times: a frame of age a (advances since it entered: 0 for the newest) is at u = (W − a − s/S)/W, clipped to
[0, 1], at substep s = 0 … S, which is point n − (W − a)·S + s of the sampler's schedule T (n = steps = W·S
points after T_1 = 1): with the linear schedule and its time shift, t = shift·u / (1 + (shift − 1)·u). A window
in the middle of an advance therefore has the times [0, 0 × (f − W), τ_0 … τ_{W−1}], τ_w = (w + φ)/W with
φ = 1 − s/S: the patterns :func:`read_jax.ans.training.rolling_timesteps` trains on (``p_rolling`` > 0).
Clean frames (a ≥ W) sit at t = 0 and are never changed (a zero step, applied bitwise with ``where``: the solver
core of :mod:`read_jax.ans.solvers`, whose solver each substep is).

The start: a "pre-roll" fills the window, f − 1 clean latent frames of the portrait held still in silence (the
latents of a still video of 1 + 8(f − 2) frames and the speech latents of as much silence), so the first real
frame has a full motion prior. In the stream's indexing latent q = 0 … f − 2 are the pre-roll and q = f − 1 + r
is real latent r, video frames 8r … 8r + 7. Handed-out frames with q < f − 1 (the ramp-up of W > 1) are
pre-roll and are dropped. The end: W − 1 more advances on silence flush the last real frames.

Decoding: each frame handed out is decoded with the D clean frames before it (``decode_context``, one compiled
shape), its 8 video frames the last 8 of the decoded window, so the causal VAE sees the same history everywhere.
:class:`RollingSampler` is the state machine both the offline path (:meth:`ReadPipeline.stream` with
``mode="rolling"``) and the live session run, so they hand out the same frames.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.ans.solvers import Sampler
from read_jax.errors import ConfigError
from read_jax.constants import FRAMES_PER_LATENT

MODES = ("clip", "rolling", "causal")  # "causal": the KV-cached window of a causal model (read_jax.ans.causal)
CLEAN_AGE = 1 << 20  # the age of a pre-roll frame: clean whatever W


def check_noisy(steps: int, noisy: int, clip_frames: int) -> int:
  """S = steps / W, the solver steps per advance; ValueError unless W divides steps and leaves a context frame."""
  if not isinstance(noisy, (int, np.integer)) or noisy < 1:
    raise ConfigError("the rolling window's noisy-frame count must be a positive integer", arg="noisy", value=noisy)
  if noisy >= clip_frames:
    raise ConfigError(f"{noisy} noisy frames leave no clean frame in a window of clip_frames={clip_frames}",
                      arg="noisy", value=noisy)
  if steps % noisy:
    raise ConfigError(f"solver steps per frame must be a multiple of the {noisy} noisy frames (each advance "
                      "runs steps / noisy of them)", arg="steps", value=steps)
  return steps // noisy


def frame_times(schedule, ages, s, noisy: int, substeps: int):
  """t [f] of frames of ``ages`` [f] at substep ``s`` (module docstring): their points of ``schedule`` [n + 1],
  0 (its last point) for clean frames."""
  n = schedule.shape[0] - 1
  index = jnp.minimum(n - (noisy - ages) * substeps + s, n)
  return schedule[index]


class WindowInputs(NamedTuple):
  """One advance's per-session inputs (a batch of sessions stacks them on a leading axis)."""

  window: jax.Array  # [f, h, w, C], already shifted, the new noise last
  ages: jax.Array  # [f] int32, 0 for the new frame
  speech: jax.Array  # [f, S, D] the window's speech latents
  z_ref: jax.Array  # [h, w, C]


def advance_scan(denoise, sampler: Sampler, params, inputs: WindowInputs, *, noisy: int, substeps: int):
  """One advance: ``substeps`` solver steps on the window. Returns it after the advance; its position f − W is
  then clean."""
  velocity = sampler.velocity(denoise, params, inputs.z_ref, inputs.speech)

  def body(x, s):
    t = frame_times(sampler.schedule, inputs.ages, s, noisy, substeps)  # [f]
    t_next = frame_times(sampler.schedule, inputs.ages, s + 1, noisy, substeps)
    return sampler.step(velocity, x, t, t_next), None

  x, _ = jax.lax.scan(body, inputs.window, jnp.arange(substeps, dtype=jnp.int32))
  return x


@functools.partial(jax.jit, static_argnames=("denoise", "noisy", "substeps"))
def advance(denoise, sampler: Sampler, params, inputs: WindowInputs, *, noisy: int, substeps: int):
  """:func:`advance_scan` jitted (one compiled shape per window)."""
  return advance_scan(denoise, sampler, params, inputs, noisy=noisy, substeps=substeps)


@functools.partial(jax.jit, static_argnames=("denoise", "noisy", "substeps"))
def advance_batch(denoise, sampler: Sampler, params, inputs: WindowInputs, *, noisy: int, substeps: int):
  """:func:`advance` of a batch of independent sessions (``inputs`` stacked on a leading axis)."""
  return jax.vmap(lambda one: advance_scan(denoise, sampler, params, one, noisy=noisy, substeps=substeps))(inputs)


def pre_roll_frames(clip_frames: int) -> int:
  """Video frames of the pre-roll, 1 + 8(f − 2): the f − 1 latent frames before real latent 0."""
  return 1 + FRAMES_PER_LATENT * (clip_frames - 2)


def stream_latents(num_video_frames: int, clip_frames: int, noisy: int) -> int:
  """Latent frames of the whole stream, pre-roll and flush included: (f − 1) + ceil(F/8) + (W − 1)."""
  return clip_frames - 1 + -(-num_video_frames // FRAMES_PER_LATENT) + noisy - 1


class Emitted(NamedTuple):
  """A real latent frame handed out: ``latent`` [h, w, C], its stream index ``q`` and its real index ``r``."""

  q: int
  r: int
  latent: np.ndarray


class RollingSampler:
  """The rolling window of one session (module docstring): :meth:`push` one speech latent, get the frame it frees.

  ``pre_roll`` [f − 1, h, w, C] the pre-roll's latents and ``pre_roll_speech`` [f − 1, S, D] its speech latents.
  Pure bookkeeping around :func:`advance`; :meth:`job` / :meth:`complete` split :meth:`push` for callers that
  run the advance themselves (batched across sessions).
  """

  def __init__(self, denoise, sampler: Sampler, params: Any, z_ref, pre_roll, pre_roll_speech, key, *, noisy: int):
    f = pre_roll.shape[0] + 1
    self.substeps = check_noisy(sampler.steps, noisy, f)
    self.noisy, self.clip_frames = noisy, f
    self.denoise, self.sampler, self.params = denoise, sampler, params
    self.z_ref = jnp.asarray(z_ref, jnp.float32)
    self.key = key
    pre_roll = jnp.asarray(pre_roll, jnp.float32)
    self.window = jnp.concatenate([jnp.zeros_like(pre_roll[:1]), pre_roll])  # [f, …]; position 0 leaves first
    self.speech = np.concatenate([np.zeros_like(pre_roll_speech[:1]), pre_roll_speech]).astype(np.float32)
    self.ages = np.full((f,), CLEAN_AGE, np.int32)
    self.q = f - 1  # the next latent frame to enter (real latent 0)

  def job(self, speech_latent) -> WindowInputs:
    """The inputs of the advance that takes in latent q with ``speech_latent`` [S, D]."""
    noise = jax.random.normal(jax.random.fold_in(self.key, self.q), self.window.shape[1:], jnp.float32)
    window = jnp.concatenate([self.window[1:], noise[None]])
    ages = np.append(np.minimum(self.ages[1:] + 1, CLEAN_AGE), 0).astype(np.int32)
    speech = np.concatenate([self.speech[1:], np.asarray(speech_latent, np.float32)[None]])
    return WindowInputs(window, ages, speech, self.z_ref)

  def complete(self, job: WindowInputs, window) -> Emitted | None:
    """Take the advance's result ``window``; the real frame it freed (None during the ramp-up of W > 1)."""
    self.window, self.ages, self.speech = window, job.ages, job.speech
    q = self.q - (self.noisy - 1)  # the frame now clean at position f − W
    self.q += 1
    r = q - (self.clip_frames - 1)
    if r < 0:
      return None
    return Emitted(q, r, self.window[self.clip_frames - self.noisy])

  def push(self, speech_latent) -> Emitted | None:
    """Advance by one latent frame (its speech latent [S, D]); the real frame that came out clean, if any."""
    job = self.job(speech_latent)
    window = advance(self.denoise, self.sampler, self.params, job, noisy=self.noisy, substeps=self.substeps)
    return self.complete(job, window)


class DecodeHistory:
  """The last D clean latents (pre-roll first), decoded together so each new frame's 8 video frames have context."""

  def __init__(self, pre_roll, context: int):
    if context < 2:  # a lone latent decodes to one frame (the causal VAE's first), not 8
      raise ConfigError("need at least 2 latent frames", arg="decode_context", value=context)
    pre_roll = np.asarray(pre_roll, np.float32)
    if pre_roll.shape[0] + 1 < context:
      raise ConfigError(f"more frames than the pre-roll's {pre_roll.shape[0]} + 1", arg="decode_context",
                        value=context)
    self.context = context
    self.latents = pre_roll[pre_roll.shape[0] - (context - 1):]

  def window(self, latent) -> np.ndarray:
    """[D, h, w, C]: the D − 1 frames before ``latent`` and ``latent``; remembers it."""
    out = np.concatenate([self.latents, np.asarray(latent, np.float32)[None]])
    self.latents = out[1:]
    return out


__all__ = ["CLEAN_AGE", "DecodeHistory", "Emitted", "MODES", "RollingSampler", "WindowInputs", "advance",
           "advance_batch", "advance_scan", "check_noisy", "frame_times", "pre_roll_frames", "stream_latents"]
