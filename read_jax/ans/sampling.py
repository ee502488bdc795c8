"""The ANS reverse sampler: Algorithm 1 of the paper (§3.3, Eq. 16–17, Appendix C.4; docs/design.md §3.5).

Flow matching: Z(t) = (1−t)·Z(0) + t·ε, the denoiser predicts v = ε − Z(0), and one Euler step is
Z(T_{i+1}) = Z(T_i) + (T_{i+1} − T_i)·v̂ (any solver of :mod:`read_jax.ans.solvers` takes its place).

Clips. N latent frames are cut into k = ceil((N−1)/(f−1)) clips of f frames overlapping by one:
clip j (0-based here, j = 0 … k−1) covers latent frames j(f−1) … j(f−1)+f−1 (0-based), i.e. the
paper's 1+(j−1)(f−1) … 1+j(f−1) with 1-based j. The last clip is padded: the sampler works on
N_pad = 1 + k(f−1) frames (speech latents zero-padded) and trims the result back to N.

Exact semantics of one step i (T_i → T_{i+1}), written per latent frame so that every loop order is the same
computation:
  * Frame ownership. Clip 0 owns its f frames. Clip j > 0 owns its frames 1 … f−1; its frame 0 (the
    "motion frame") is clip j−1's frame f−1 and is owned by clip j−1. Only the owner's Euler update
    ever changes a frame.
  * Clip 0 sees t = [0, T_i, …, T_i] (the leading 0 is z_R) and Euler-updates all f frames.
  * Clip j > 0 runs after clip j−1 has finished step i: its motion frame is clip j−1's last frame
    *already at T_{i+1}* ("Zj(Ti)[1] ← Zj−1(Ti+1)[f]"), it sees t = [0, T_{i+1}, T_i, …, T_i] and
    Euler-updates frames 1 … f−1 only. Its motion frame is already at its target time, so its Euler
    step is (T_{i+1} − T_{i+1})·v̂ = 0: the velocity predicted there is discarded and the shared frame
    keeps clip j−1's value. (The code uses a per-frame dt vector that is zero for z_R and the motion
    frame, then `jnp.where` on the ownership mask, so the shared frame is bitwise untouched.)
  * At the last step the motion frame is clip j−1's final (T_n = 0) frame.

Loop order. Clip j at step i needs only clip j−1's last frame at T_{i+1}, so clip 0 can run through all its steps
recording its last frame after every step (a trajectory [n, h, w, C]), then clip 1 consumes that trajectory, and
so on: the same computation as Algorithm 1's steps-outer order (tests/_ans_reference.py keeps both orders as one
program each, and the test suite shows the three agree). Clip j's initial noise is
`normal(fold_in(key, j), [f, h, w, C])` (its frame 0 is never used for j > 0: it is replaced by the motion frame
before the first denoiser call).

`stream_clips` runs this clips-outer order with the loop over clips in Python around ONE jitted per-clip function
of fixed shapes (:func:`run_clip`, the scan over steps inside): a longer audio only calls it more often and never
compiles the denoiser again, and each clip is handed out as soon as it is done, so the first seconds can be
decoded and shown while the rest is generated.

Timestep convention: a schedule of n + 1 points T_1 = 1 > … > T_{n+1} = 0, so "8-step sampling" (the paper, C.4)
means 8 solver steps per clip (8 denoiser passes with Euler). The schedule, the CFG mode (Eq. 16–17,
:mod:`read_jax.ans.guidance`) and the solver travel together as a :class:`read_jax.ans.solvers.Sampler`.

The denoiser is any callable ``denoise(params, x, t, speech) -> v`` with x [B, 1+f, h, w, C] (x[:, 0] is z_R,
zeros in the ∅ branches), t [B, 1+f], speech [B, f, S, D] and v shaped like x; weights and other arrays go in
``params`` so they are jit arguments, not constants baked into the compiled program. It is a static jit
argument, cached by hash: pass a value such as :class:`read_jax.models.a2v_dit.Denoiser`, equal for equal models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.ans.solvers import Sampler
from read_jax.constants import FRAMES_PER_LATENT

Array = jax.Array
Denoise = Callable[..., Array]


# ---------------------------------------------------------------------------------------------
# Clip arithmetic


def num_clips(num_frames: int, clip_frames: int) -> int:
  """k = ceil((N−1)/(f−1)) clips of f latent frames overlapping by one cover N latent frames (k ≥ 1)."""
  _check_lengths(num_frames, clip_frames)
  return max(1, -(-(num_frames - 1) // (clip_frames - 1)))


def padded_frames(num_frames: int, clip_frames: int) -> int:
  """N_pad = 1 + k(f−1): the latent frames the sampler actually generates before trimming to N."""
  return 1 + num_clips(num_frames, clip_frames) * (clip_frames - 1)


def latent_frames_for_video(num_video_frames: int, ratio: int = FRAMES_PER_LATENT) -> int:
  """Latent frames whose decoded video (1 + ratio·(N−1) frames) covers ``num_video_frames``.

  Rounds up, so the decoded video can be trimmed to the audio's exact frame count. (The floor,
  (F−1)//ratio + 1, would leave up to ratio−1 frames of speech without video.)
  """
  if num_video_frames < 1:
    raise ValueError(f"num_video_frames: need at least 1 frame, got {num_video_frames}")
  return -(-(num_video_frames - 1) // ratio) + 1


def _check_lengths(num_frames: int, clip_frames: int):
  if clip_frames < 2:
    raise ValueError(f"clip_frames: need at least 2 (one motion frame + one new frame), got {clip_frames}")
  if num_frames < 1:
    raise ValueError(f"num_frames: need at least 1 latent frame, got {num_frames}")


# ---------------------------------------------------------------------------------------------
# One step of one clip, and one clip through all steps


def clip_step(denoise, sampler: Sampler, params, x, motion, first, t_i, t_next, z_ref, speech):
  """Step i of one clip (module docstring): x [f, h, w, C] at T_i, its frame 0 replaced by ``motion`` [h, w, C]
  (clip j−1's last frame at T_{i+1}) unless ``first`` (a traced bool: one program serves clip 0 and every later
  clip). Returns the clip at T_{i+1}; the motion frame, already there, does not move."""
  f = x.shape[0]
  x = jnp.where(first, x, x.at[0].set(motion))
  is_motion = (jnp.arange(f) == 0) & ~first  # [f] frames this clip does not own
  t_frames = jnp.where(is_motion, t_next, t_i)  # [f]: [T_i, …] or [T_{i+1}, T_i, …]
  t_to = jnp.full((f,), t_next, t_frames.dtype)
  return sampler.step(sampler.velocity(denoise, params, z_ref, speech), x, t_frames, t_to)


class ClipCarry(NamedTuple):
  """What clip j needs from clip j−1."""

  motion: Array  # [n, h, w, C] clip j−1's last frame at T_2 … T_{n+1} (ignored for clip 0)
  first: Array  # [] bool, True for clip 0


class ClipInputs(NamedTuple):
  """One clip's per-session inputs of :func:`run_clip` (a batch of sessions stacks them on a leading axis)."""

  carry: ClipCarry
  noise: Array  # [f, h, w, C] the clip's initial noise
  z_ref: Array  # [h, w, C]
  speech: Array  # [f, S, D] its speech latents


def first_carry(frame_shape, steps: int) -> ClipCarry:
  return ClipCarry(motion=jnp.zeros((steps,) + tuple(frame_shape), jnp.float32), first=jnp.ones((), bool))


def clip_noise(key, j: int, clip_frames: int, frame_shape):
  """Clip j's initial noise [f, h, w, C]: ``normal(fold_in(key, j))``, the same in every sampling order."""
  return jax.random.normal(jax.random.fold_in(key, j), (clip_frames,) + tuple(frame_shape), jnp.float32)


def clip_scan(denoise, sampler: Sampler, params, inputs: ClipInputs):
  """One clip through all steps (a `lax.scan`): (carry for the next clip, the final clip [f, h, w, C])."""
  carry = inputs.carry

  def body(x, xs):  # carry: the clip [f, h, w, C] at T_i
    t_i, t_next, motion = xs
    x = clip_step(denoise, sampler, params, x, motion, carry.first, t_i, t_next, inputs.z_ref, inputs.speech)
    return x, x[-1]  # the last frame at T_{i+1}, for the next clip

  x, last = jax.lax.scan(body, inputs.noise, (sampler.schedule[:-1], sampler.schedule[1:], carry.motion))
  return ClipCarry(motion=last, first=jnp.zeros((), bool)), x


@functools.partial(jax.jit, static_argnames=("denoise",))
def run_clip(denoise, sampler: Sampler, params, inputs: ClipInputs):
  """:func:`clip_scan` jitted: fixed shapes whatever the video length, so the production path compiles it once."""
  return clip_scan(denoise, sampler, params, inputs)


@functools.partial(jax.jit, static_argnames=("denoise",))
def run_clips(denoise, sampler: Sampler, params, inputs: ClipInputs):
  """:func:`run_clip` of a batch of independent sessions: ``inputs`` stacked on a leading axis B, the weights and
  the sampler shared. Each session's result is the one it gets alone (the batch only stacks them)."""
  return jax.vmap(lambda one: clip_scan(denoise, sampler, params, one))(inputs)


# ---------------------------------------------------------------------------------------------
# Streaming generation


class _Plan(NamedTuple):
  num_clips: int  # k
  speech: np.ndarray  # [N_pad, S, D], zero-padded
  z_ref: np.ndarray  # [h, w, C]


def _plan(z_ref, speech, num_frames, clip_frames) -> _Plan:
  _check_lengths(num_frames, clip_frames)
  # numpy on the host: slicing clip windows out of it must not dispatch (and compile) a device op per offset.
  z_ref = np.asarray(z_ref, np.float32)
  speech = np.asarray(speech, np.float32)
  if z_ref.ndim != 3:
    raise ValueError(f"z_ref: need [h, w, C], got shape {z_ref.shape}")
  if speech.ndim != 3:
    raise ValueError(f"speech: need [N, S, D] speech latents, got shape {speech.shape}")
  n_pad = padded_frames(num_frames, clip_frames)
  if speech.shape[0] < num_frames:
    raise ValueError(f"speech: {speech.shape[0]} latent frames, fewer than num_frames = {num_frames}")
  # Pad the last clip. Zero latents are "no speech" to the model only as much as dropout taught it;
  # a pipeline that wants true silence encodes a silence-padded waveform and passes ≥ N_pad frames.
  speech = speech[:n_pad]
  speech = np.pad(speech, ((0, n_pad - speech.shape[0]), (0, 0), (0, 0)))
  return _Plan(num_clips(num_frames, clip_frames), speech, z_ref)


def stream_clips(denoise: Denoise, sampler: Sampler, key: Array, z_ref, speech, num_frames: int,
                 clip_frames: int, *, params: Any = None, motion_prior: bool = True) -> Iterator[Array]:
  """Yield each clip's final latents [f, h, w, C] (frame 0 of clip j > 0 is clip j−1's last frame).

  The clips-outer order with the clip loop in Python around one jitted per-clip scan of fixed shapes
  (:func:`run_clip`), so every clip count reuses the same compiled denoiser. Clip j is handed out as soon as it
  is finished; the last clip still holds the padding frames (see :func:`stream` for trimmed output).

  ``motion_prior=False`` is the paper's Fig. 2 ablation, plain clip concatenation: every clip is
  sampled as clip 0 is, from its own noise with no motion frame, so nothing carries across clip
  boundaries. The clip layout is unchanged (clip j's frame 0, which ANS shares with clip j−1, is
  generated and then dropped by :func:`stream`), so the two outputs align frame for frame.
  """
  p = _plan(z_ref, speech, num_frames, clip_frames)
  first = first_carry(p.z_ref.shape, sampler.steps)
  carry = first
  for j in range(p.num_clips):
    start = j * (clip_frames - 1)
    noise = clip_noise(key, j, clip_frames, p.z_ref.shape)
    if not motion_prior:
      carry = first
    carry, clip = run_clip(denoise, sampler, params,
                           ClipInputs(carry, noise, p.z_ref, p.speech[start:start + clip_frames]))
    yield clip


def stream(denoise: Denoise, sampler: Sampler, key: Array, z_ref, speech, num_frames: int, clip_frames: int,
           **kwargs) -> Iterator[Array]:
  """Yield the new latent frames of each clip as soon as it is done: [f] for clip 0, then [f−1] each.

  Concatenated, the pieces are the N latent frames [N, h, w, C] (the padding trimmed off). Keyword arguments
  as :func:`stream_clips`.
  """
  emitted = 0
  for j, clip in enumerate(stream_clips(denoise, sampler, key, z_ref, speech, num_frames, clip_frames, **kwargs)):
    new = clip if j == 0 else clip[1:]
    new = new[:num_frames - emitted]
    emitted += new.shape[0]
    if new.shape[0]:
      yield new


__all__ = ["ClipCarry", "ClipInputs", "clip_noise", "clip_scan", "clip_step", "first_carry",
           "latent_frames_for_video", "num_clips", "padded_frames", "run_clip", "run_clips", "stream",
           "stream_clips"]
