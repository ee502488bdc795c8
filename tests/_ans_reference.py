"""Reference orders of the ANS reverse sampler, for the tests (read_jax/ans/sampling.py's module docstring).

The package runs Algorithm 1 clip by clip (``sampling.stream``: a Python loop over clips around one jitted
per-clip scan). These write the same computation as one program each, in both orders:

  clips_outer  a `lax.scan` over clips (carry: the previous clip's trajectory) of the per-clip scan over steps
  steps_outer  Algorithm 1 as printed: a `lax.scan` over steps (carry: every latent [N_pad, h, w, C]) of a
               `lax.scan` over clips, each reading its window (the shared frame just updated by the clip before)
               and writing back the frames it owns

Both are built from the package's own per-clip step (``sampling.clip_step``), so the tests compare loop orders,
not two copies of the arithmetic; ``reference_algorithm1`` in test_ans_sampling.py is the independent literal
transcription.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.ans import sampling
from read_jax.ans.solvers import Sampler

ORDERS = ("stream", "clips_outer", "steps_outer")


def join_clips(clips):
  """[k, f, …] overlapping clips → [1 + k(f−1), …]: clip j's frame 0 is clip j−1's last frame."""
  return jnp.concatenate([clips[0], clips[1:, 1:].reshape((-1,) + clips.shape[2:])], axis=0)


@functools.partial(jax.jit, static_argnames=("denoise",))
def clips_outer(denoise, sampler, params, noise, z_ref, speech):
  """noise [k, f, h, w, C], speech [k, f, S, D] → clips [k, f, h, w, C] at T = 0."""
  init = sampling.first_carry(noise.shape[2:], sampler.steps)

  def clip(carry, xs):
    noise_j, speech_j = xs
    return sampling.clip_scan(denoise, sampler, params, sampling.ClipInputs(carry, noise_j, z_ref, speech_j))

  _, clips = jax.lax.scan(clip, init, (noise, speech))
  return clips


@functools.partial(jax.jit, static_argnames=("denoise",))
def steps_outer(denoise, sampler, params, noise, z_ref, speech):
  """noise [k, f, h, w, C], speech [k, f, S, D] → Z(0) [N_pad, h, w, C]."""
  k, f = noise.shape[:2]
  z = join_clips(noise)  # Z(T_1) = ε, the shared frames taken from clip j−1's noise

  def step(z, ts):
    t_i, t_next = ts

    def clip(z, j):
      start = j * (f - 1)
      x = jax.lax.dynamic_slice_in_dim(z, start, f, axis=0)  # frame 0 already at T_{i+1} if j > 0
      x = sampling.clip_step(denoise, sampler, params, x, x[0], j == 0, t_i, t_next, z_ref, speech[j])
      return jax.lax.dynamic_update_slice_in_dim(z, x, start, axis=0), None

    z, _ = jax.lax.scan(clip, z, jnp.arange(k))
    return z, None

  z, _ = jax.lax.scan(step, z, (sampler.schedule[:-1], sampler.schedule[1:]))
  return z


def sample(denoise, sampler: Sampler, key, z_ref, speech, num_frames: int, clip_frames: int, *,
           order: str = "stream", params=None):
  """N latent frames [N, h, w, C] in ``order``; clip j's noise from ``fold_in(key, j)`` in every order."""
  if order not in ORDERS:
    raise ValueError(f"order: must be one of {ORDERS}, got {order!r}")
  if order == "stream":
    return jnp.concatenate(list(sampling.stream(denoise, sampler, key, z_ref, speech, num_frames, clip_frames,
                                                params=params)))
  k, f = sampling.num_clips(num_frames, clip_frames), clip_frames
  n_pad = sampling.padded_frames(num_frames, f)
  z_ref = np.asarray(z_ref, np.float32)
  speech = np.asarray(speech, np.float32)[:n_pad]
  speech = np.pad(speech, ((0, n_pad - speech.shape[0]), (0, 0), (0, 0)))
  noise = jax.vmap(lambda j: sampling.clip_noise(key, j, f, z_ref.shape))(jnp.arange(k))
  speech_clips = np.stack([speech[j * (f - 1):j * (f - 1) + f] for j in range(k)])  # [k, f, S, D]
  if order == "clips_outer":
    z = join_clips(clips_outer(denoise, sampler, params, noise, z_ref, speech_clips))
  else:
    z = steps_outer(denoise, sampler, params, noise, z_ref, speech_clips)
  return z[:num_frames]
