"""The ANS reverse sampler: Algorithm 1 of the paper (§3.3, Eq. 16–17, Appendix C.4; DESIGN §3.5).

Flow matching: Z(t) = (1−t)·Z(0) + t·ε, the denoiser predicts v = ε − Z(0), and one Euler step is
Z(T_{i+1}) = Z(T_i) + (T_{i+1} − T_i)·v̂.

Clips. N latent frames are cut into k = ceil((N−1)/(f−1)) clips of f frames overlapping by one:
clip j (0-based here, j = 0 … k−1) covers latent frames j(f−1) … j(f−1)+f−1 (0-based), i.e. the
paper's 1+(j−1)(f−1) … 1+j(f−1) with 1-based j. The last clip is padded: the sampler works on
N_pad = 1 + k(f−1) frames (speech latents zero-padded) and trims the result back to N.

Exact semantics of one step i (T_i → T_{i+1}), written per latent frame so that both loop orders
below are the same computation:
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

Two loop orders compute exactly this:
  * "steps_outer" — Algorithm 1 as printed: a `lax.scan` over steps whose carry is the whole latent
    sequence [N_pad, h, w, C]; inside, a `lax.scan` over clips reads clip j's window, in which the
    shared frame has just been updated by clip j−1, and writes back only the owned frames.
  * "clips_outer" — the streaming order: clip j at step i needs only clip j−1's last frame at
    T_{i+1}, so clip 0 runs through all its steps recording its last frame after every step (a
    trajectory [n−1, h, w, C]), then clip 1 consumes that trajectory, and so on. A `lax.scan` over
    clips whose carry is the previous clip's trajectory, around a `lax.scan` over steps.
  Clip j's initial noise is `normal(fold_in(key, j), [f, h, w, C])` in both orders (its frame 0 is
  never used for j > 0: it is replaced by the motion frame before the first denoiser call).

Both orders as one jitted program compile once per clip count k. The production path, `stream` /
`stream_clips` (and `sample(order="stream")`, the default), is the clips-outer order with the loop
over clips in Python around ONE jitted per-clip function of fixed shapes (the scan over steps
inside): a longer audio only calls it more often and never compiles the denoiser again. It also
hands each clip out as soon as it is done, so the first seconds can be decoded and shown while the
rest is generated.

Timestep convention: a schedule of n = steps + 1 points T_1 = 1 > … > T_n = 0, so "8-step
sampling" (the paper, C.4) means 8 denoiser forward passes per clip. The default is linear; `shift`
applies the SD3/LTX time shift T ↦ s·T / (1 + (s−1)·T) (s > 1 spends more steps at high noise).

Classifier-free guidance (Eq. 16–17): :mod:`read_jax.ans.guidance`.

The denoiser is any callable ``denoise(x, t, speech) -> v`` with x [B, 1+f, h, w, C] (x[:, 0] is
z_R, zeros in the ∅ branches), t [B, 1+f], speech [B, f, S, D] and v shaped like x. Weights (and any
other arrays, e.g. the text embedding) should be passed as ``params`` so they are jit arguments, not
constants baked into the compiled program; the call is then ``denoise(params, x, t, speech)``.
Pass the same callable every time: it is a static jit argument, cached by identity.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.models.vae import FRAMES_PER_LATENT
from read_jax.ans.guidance import CFG_MODES, DEFAULT_GUIDANCE, guidance_scales, guided_velocity

ORDERS = ("stream", "clips_outer", "steps_outer")
DEFAULT_STEPS = 8  # paper C.4: "8-step sampling"

Array = jax.Array
Denoise = Callable[..., Array]


# ---------------------------------------------------------------------------------------------
# Schedule and clip arithmetic


def timesteps(steps: int = DEFAULT_STEPS, shift: float = 1.0, schedule=None) -> np.ndarray:
  """The schedule T_1 = 1 > … > T_n = 0 as float32 [steps + 1].

  ``schedule``, when given, is used as is (after checks) and ``steps``/``shift`` are ignored.
  """
  if schedule is not None:
    t = np.asarray(schedule, dtype=np.float64)
    if t.ndim != 1 or t.size < 2:
      raise ValueError(f"schedule: need a 1-D array of at least 2 timesteps, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or t[0] != 1.0 or t[-1] != 0.0 or np.any(np.diff(t) >= 0):
      raise ValueError(f"schedule: must start at 1, end at 0 and strictly decrease, got {t.tolist()}")
    return t.astype(np.float32)
  if not isinstance(steps, (int, np.integer)) or steps < 1:
    raise ValueError(f"steps: need a positive integer, got {steps!r}")
  if not (np.isfinite(shift) and shift > 0):
    raise ValueError(f"shift: need a positive number, got {shift!r}")
  t = np.linspace(1.0, 0.0, steps + 1)
  t = shift * t / (1.0 + (shift - 1.0) * t)  # SD3/LTX time shift; identity for shift = 1
  return t.astype(np.float32)


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
# One guided Euler step of one clip (shared by every loop order)


def _clip_step(denoise, cfg, params, x, motion, first, t_i, t_next, z_ref, speech, guidance):
  """Step i of one clip: x [f, h, w, C] at T_i (frame 0 is overwritten by ``motion`` unless ``first``).

  ``motion`` [h, w, C] is clip j−1's last frame at T_{i+1}; ``first`` is a traced bool, so one
  compiled program serves clip 0 and every later clip. Returns the clip at T_{i+1}.
  """
  f = x.shape[0]
  x = jnp.where(first, x, x.at[0].set(motion))
  is_motion = (jnp.arange(f) == 0) & ~first  # [f] frames this clip does not own
  t_frames = jnp.where(is_motion, t_next, t_i)  # [f]: [T_i, …] or [T_{i+1}, T_i, …]
  t = jnp.concatenate([jnp.zeros((1,), t_frames.dtype), t_frames])  # [1+f], z_R at t = 0
  v = guided_velocity(denoise, cfg, params, x, z_ref, speech, t, guidance)
  x_next = x + (t_next - t_frames)[:, None, None, None] * v  # Euler; dt = 0 on the motion frame
  return jnp.where(is_motion[:, None, None, None], x, x_next)  # the owner's value stays bitwise


# ---------------------------------------------------------------------------------------------
# Clips outer (streaming): one clip through all steps, carrying the previous clip's last frames


class ClipCarry(NamedTuple):
  """Carry of the clips-outer loop: what clip j needs from clip j−1."""

  motion: Array  # [n−1, h, w, C] clip j−1's last frame at T_2 … T_n (ignored for clip 0)
  first: Array  # [] bool, True for clip 0


def _run_clip(denoise, cfg, params, carry: ClipCarry, noise, z_ref, speech, schedule, guidance):
  """One clip through all n−1 steps (a `lax.scan`). Returns (carry for the next clip, final clip [f, h, w, C])."""

  def step(x, inputs):  # carry: the clip [f, h, w, C] at T_i
    t_i, t_next, motion = inputs
    x = _clip_step(denoise, cfg, params, x, motion, carry.first, t_i, t_next, z_ref, speech, guidance)
    return x, x[-1]  # record the last frame at T_{i+1} for the next clip

  x, last = jax.lax.scan(step, noise, (schedule[:-1], schedule[1:], carry.motion))
  return ClipCarry(motion=last, first=jnp.zeros((), bool)), x


@functools.partial(jax.jit, static_argnames=("denoise", "cfg"))
def run_clip(denoise, cfg, params, carry, noise, z_ref, speech, schedule, guidance):
  # Fixed shapes whatever the video length: the production path compiles this once.
  return _run_clip(denoise, cfg, params, carry, noise, z_ref, speech, schedule, guidance)


@functools.partial(jax.jit, static_argnames=("denoise", "cfg"))
def _clips_outer(denoise, cfg, params, noise, z_ref, speech, schedule, guidance):
  """Streaming order as one program: `lax.scan` over clips of `lax.scan` over steps.

  noise [k, f, h, w, C], speech [k, f, S, D] → clips [k, f, h, w, C] at T_n = 0.
  """
  init = first_carry(noise.shape[2:], schedule.shape[0])

  def clip(carry, inputs):
    noise_j, speech_j = inputs
    return _run_clip(denoise, cfg, params, carry, noise_j, z_ref, speech_j, schedule, guidance)

  _, clips = jax.lax.scan(clip, init, (noise, speech))
  return clips


def first_carry(frame_shape, n) -> ClipCarry:
  return ClipCarry(motion=jnp.zeros((n - 1,) + tuple(frame_shape), jnp.float32), first=jnp.ones((), bool))


# ---------------------------------------------------------------------------------------------
# Steps outer (Algorithm 1 as printed): every clip at step i, then step i+1


@functools.partial(jax.jit, static_argnames=("denoise", "cfg"))
def _steps_outer(denoise, cfg, params, noise, z_ref, speech, schedule, guidance):
  """Algorithm 1's order: `lax.scan` over steps (carry: all latents [N_pad, h, w, C]) of `lax.scan` over clips.

  noise [k, f, h, w, C], speech [k, f, S, D] → Z(0) [N_pad, h, w, C].
  """
  k, f = noise.shape[:2]
  z = _join_clips(noise)  # Z(T_1) = ε, the shared frames taken from clip j−1's noise
  clip_ids = jnp.arange(k)

  def step(z, ts):
    t_i, t_next = ts

    def clip(z, j):
      start = j * (f - 1)
      x = jax.lax.dynamic_slice_in_dim(z, start, f, axis=0)  # frame 0 already at T_{i+1} if j > 0
      x = _clip_step(denoise, cfg, params, x, x[0], j == 0, t_i, t_next, z_ref, speech[j], guidance)
      return jax.lax.dynamic_update_slice_in_dim(z, x, start, axis=0), None

    z, _ = jax.lax.scan(clip, z, clip_ids)
    return z, None

  z, _ = jax.lax.scan(step, z, (schedule[:-1], schedule[1:]))
  return z


def _join_clips(clips):
  """[k, f, …] overlapping clips → [1 + k(f−1), …]: clip j's frame 0 is clip j−1's last frame."""
  return jnp.concatenate([clips[0], clips[1:, 1:].reshape((-1,) + clips.shape[2:])], axis=0)


# ---------------------------------------------------------------------------------------------
# Public API


class _Plan(NamedTuple):
  num_frames: int  # N
  clip_frames: int  # f
  num_clips: int  # k
  schedule: Array  # [n]
  guidance: Array  # [2] (α, β)
  speech: np.ndarray  # [N_pad, S, D], zero-padded
  z_ref: np.ndarray  # [h, w, C]


def _plan(z_ref, speech, num_frames, clip_frames, steps, shift, schedule, cfg, alpha, beta) -> _Plan:
  if cfg not in CFG_MODES:
    raise ValueError(f"cfg: must be one of {CFG_MODES}, got {cfg!r}")
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
  guidance = guidance_scales(cfg, alpha, beta)
  sched = jnp.asarray(timesteps(steps, shift, schedule))
  k = num_clips(num_frames, clip_frames)
  return _Plan(num_frames, clip_frames, k, sched, guidance, speech, z_ref)


def clip_noise(key, j: int, clip_frames: int, frame_shape):
  """Clip j's initial noise [f, h, w, C]: ``normal(fold_in(key, j))``, the same in every sampling order."""
  return jax.random.normal(jax.random.fold_in(key, j), (clip_frames,) + tuple(frame_shape), jnp.float32)


def stream_clips(denoise: Denoise, key: Array, z_ref, speech, num_frames: int, clip_frames: int, *,
                 steps: int = DEFAULT_STEPS, shift: float = 1.0, schedule=None, cfg: str = "split",
                 alpha: float | None = None, beta: float | None = None, params: Any = None,
                 motion_prior: bool = True) -> Iterator[Array]:
  """Yield each clip's final latents [f, h, w, C] (frame 0 of clip j > 0 is clip j−1's last frame).

  The clips-outer order with the clip loop in Python around one jitted per-clip scan of fixed
  shapes, so every clip count reuses the same compiled denoiser. Clip j is handed out as soon as it
  is finished; the last clip still holds the padding frames (see :func:`stream` for trimmed output).

  ``motion_prior=False`` is the paper's Fig. 2 ablation, plain clip concatenation: every clip is
  sampled as clip 0 is, from its own noise with no motion frame, so nothing carries across clip
  boundaries. The clip layout is unchanged (clip j's frame 0, which ANS shares with clip j−1, is
  generated and then dropped by :func:`stream`), so the two outputs align frame for frame.
  """
  p = _plan(z_ref, speech, num_frames, clip_frames, steps, shift, schedule, cfg, alpha, beta)
  first = first_carry(p.z_ref.shape, p.schedule.shape[0])
  carry = first
  for j in range(p.num_clips):
    start = j * (clip_frames - 1)
    noise = clip_noise(key, j, clip_frames, p.z_ref.shape)
    if not motion_prior:
      carry = first
    carry, clip = run_clip(denoise, cfg, params, carry, noise, p.z_ref,
                                p.speech[start:start + clip_frames], p.schedule, p.guidance)
    yield clip


def stream(denoise: Denoise, key: Array, z_ref, speech, num_frames: int, clip_frames: int,
           **kwargs) -> Iterator[Array]:
  """Yield the new latent frames of each clip as soon as it is done: [f] for clip 0, then [f−1] each.

  Concatenated, the pieces are exactly :func:`sample`'s [N, h, w, C] (the padding is trimmed off).
  Keyword arguments as :func:`stream_clips`.
  """
  emitted = 0
  for j, clip in enumerate(stream_clips(denoise, key, z_ref, speech, num_frames, clip_frames, **kwargs)):
    new = clip if j == 0 else clip[1:]
    new = new[:num_frames - emitted]
    emitted += new.shape[0]
    if new.shape[0]:
      yield new


def sample(denoise: Denoise, key: Array, z_ref, speech, num_frames: int, clip_frames: int, *,
           steps: int = DEFAULT_STEPS, shift: float = 1.0, schedule=None, cfg: str = "split",
           alpha: float | None = None, beta: float | None = None, order: str = "stream",
           params: Any = None) -> Array:
  """Generate N latent frames [N, h, w, C] with the ANS reverse process (Algorithm 1).

  Args:
    denoise: ``denoise(x [B,1+f,h,w,C], t [B,1+f], speech [B,f,S,D]) -> v`` (or with ``params``
      first when ``params`` is given); a static jit argument, cached by identity.
    key: PRNG key; clip j's noise comes from ``fold_in(key, j)``.
    z_ref: the reference latent z_R [h, w, C].
    speech: speech latents C [≥N, S, D] (zero-padded to whole clips when shorter than N_pad).
    num_frames: N, latent frames to return. clip_frames: f, latent frames per clip (16 in the paper).
    steps, shift, schedule: see :func:`timesteps`; 8 linear steps by default.
    cfg: "split" (Eq. 17), "joint" (Eq. 16) or "none"; alpha, beta default to the paper's values.
    order: "stream" (default; clips outer, Python clip loop, one compile for every length),
      "clips_outer" (the same order as one `lax.scan` program) or "steps_outer" (Algorithm 1's order,
      one `lax.scan` program). All three give the same latents; the two single programs compile
      once per clip count.
    params: optional pytree (weights, text embedding) passed to ``denoise`` as a jit argument.
  """
  if order not in ORDERS:
    raise ValueError(f"order: must be one of {ORDERS}, got {order!r}")
  kw = dict(steps=steps, shift=shift, schedule=schedule, cfg=cfg, alpha=alpha, beta=beta)
  if order == "stream":
    return jnp.concatenate(list(stream(denoise, key, z_ref, speech, num_frames, clip_frames, params=params, **kw)))
  p = _plan(z_ref, speech, num_frames, clip_frames, **kw)
  noise = jax.vmap(lambda j: clip_noise(key, j, clip_frames, p.z_ref.shape))(jnp.arange(p.num_clips))
  f = clip_frames
  speech_clips = np.stack([p.speech[j * (f - 1):j * (f - 1) + f] for j in range(p.num_clips)])  # [k, f, S, D]
  run = _clips_outer if order == "clips_outer" else _steps_outer
  z = run(denoise, cfg, params, noise, p.z_ref, speech_clips, p.schedule, p.guidance)
  if order == "clips_outer":
    z = _join_clips(z)
  return z[:num_frames]


__all__ = ["CFG_MODES", "DEFAULT_GUIDANCE", "ORDERS", "ClipCarry", "latent_frames_for_video", "num_clips", "padded_frames",
           "sample", "stream", "stream_clips", "timesteps"]
