"""The causal window: a block-causal A2V-DiT with a per-session KV cache, one latent frame in, one out
(docs/design.md §3.10, "Causal streaming"; the design of LiveTalk, CausVid and Self Forcing).

The rolling window (:mod:`read_jax.ans.rolling`) re-runs the whole f-frame window through the denoiser for
every solver step: 17 × 256 tokens at full size to move 256 of them. Under the model's block-causal mask
(``A2VDiT.causal``: latent frame i sees z_R, the text and frames ≤ i) a clean frame's keys and values do not
depend on anything after it, so they are computed once and kept:

  * The cache holds, per block, the self-attention K/V of z_R (it sees only itself: fixed for the session) and
    of the C = f − 1 clean frames before the newest, in a ring of C slots (one compiled shape whatever the
    session's length; slot of stream frame a: a mod C).
  * Advance q: latent frame q enters as noise ``normal(fold_in(key, q))`` (the rolling window's draw), takes
    every step of the sampler's schedule as the window's last frame (one frame of tokens per pass, attending to
    z_R, the cache and itself: :meth:`A2VDiT.cached`), and leaves clean. One more pass of it, clean at t = 0,
    gives its K/V, which replace the oldest slot's. So W = 1 noisy frame, ``steps + 1`` one-frame passes per
    latent frame (a 2-step student: 3).
  * The start: the pre-roll (f − 1 still latents of the portrait, in silence; :func:`rolling.pre_roll_frames`)
    fills the cache in one uncached pass (:meth:`A2VDiT.frame_kv`), so the first real frame already has a full
    window behind it, as in the rolling window.

Design choices:

  * **K/V at t = 0, recomputed.** A frame's K/V enter the cache from a pass of it clean at t = 0, not from its
    last denoising pass (at t = T_n, 0.5 for 2 steps). That is one pass more per frame (3 instead of 2), and it
    is what makes the cached stream *equal* to the uncached block-causal forward in which every earlier frame
    is clean, which is also what training shows the model (the rolling patterns' clean context at t = 0), so
    no train/test gap is added. Reusing the last pass's K/V would save a third of the denoiser FLOPs for a
    context the model never saw in training (noisy keys for a clean frame); the cost model
    (``read_jax/bench/cost.py``) prints both.
  * **Keys cached before RoPE, rotated at the window position where they are attended.** Each pass puts its
    query frame at window position C + 1 = f (the last frame of a window the model was trained on), z_R at 0
    and the cached frames at their window positions C + 1 − (q − a). Frame-to-frame scores depend only on the
    distance (RoPE is relative), so this equals rotating at absolute positions in exact arithmetic, but the
    angles stay in the range training saw however long the session (absolute positions of a 10-minute stream
    are 100× past it, where float32 angles lose digits); and z_R, which must stay at window position 0, is not
    relative to anything: with absolute positions its distance to the query would grow without bound. The
    rotation is elementwise over C·H·W keys per block, nothing beside the matmuls.
  * **What the cache equals.** Sliding the window evicts the oldest frame, but the frames still cached were
    computed when it was there: exactly a sliding-window (banded) block-causal model over the whole stream,
    frame i seeing the f frames up to itself and z_R placed min(i, f) frames before it
    (:meth:`A2VDiT.causal_call` with ``window=f``; inside one training window of f frames that is the plain
    block-causal mask). ``tests/test_causal.py`` checks the cached stream against it across the ring's wrap.
  * One CFG branch (``cfg`` "none" or "distilled"): a guided teacher's other branches (zeroed z_R and speech)
    would each need a cache of their own; the causal student has guidance distilled in.

:class:`CausalWindow` has :class:`rolling.RollingSampler`'s shape (``job`` → per-session inputs, :func:`advance`
or :func:`advance_batch`, ``complete`` → the freed frame), so sessions batch the same way.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.ans import rolling
from read_jax.ans.solvers import Sampler
from read_jax.models.a2v_dit import FrameKV, KVCacheView

CAUSAL_CFG = ("none", "distilled")  # the one-branch CFG modes a cached window runs
EMPTY = -1  # the stream index of an empty slot


def check_causal(sampler: Sampler, model) -> None:
  """ValueError unless ``model`` (an ``A2VDiT``) is causal and ``sampler`` runs one branch."""
  if not getattr(model, "causal", False):
    raise ValueError("mode 'causal': the A2V-DiT is not block-causal (a2v_dit/config.json causal=false); train a "
                     "causal student (configs/demo_a2v_dit.py:causal, docs/distillation.md)")
  if sampler.cfg not in CAUSAL_CFG:
    raise ValueError(f"mode 'causal': cfg {sampler.cfg!r} runs {sampler.cfg} branches; a cached window runs one "
                     f"({' or '.join(CAUSAL_CFG)}: a guidance-distilled student)")


class CausalCache(NamedTuple):
  """One session's cache (fixed shapes; a batch of sessions stacks them on a leading axis)."""

  ref: FrameKV  # [layers, 1, 1, H·W, N·K] z_R's K/V
  frames: FrameKV  # [layers, 1, C, H·W, N·K] the ring
  index: jax.Array  # [C] int32: the stream frame in each slot, EMPTY where none


class CausalInputs(NamedTuple):
  """One advance's per-session inputs."""

  noise: jax.Array  # [h, w, C] the new frame at t = 1
  speech: jax.Array  # [S, D] its speech latent
  cache: CausalCache
  q: jax.Array  # [] int32 its stream index


def cache_view(cache: CausalCache, q) -> KVCacheView:
  """The model's view of ``cache`` from frame ``q`` at window position C + 1: slot frame a at C + 1 − (q − a)."""
  slots = cache.index.shape[-1]
  age = q - cache.index  # [C]
  position = (slots + 1 - age).astype(jnp.int32)
  valid = (cache.index != EMPTY) & (age >= 1) & (age <= slots)
  return KVCacheView(cache.ref, cache.frames, position[None], valid[None])


def _guidance(sampler: Sampler):
  return sampler.guidance[None] if sampler.cfg == "distilled" else None  # [1, 2]


def advance_scan(denoiser, sampler: Sampler, params, inputs: CausalInputs):
  """One advance (module docstring): ``sampler.steps`` solver steps of the new frame against the cache, then its
  K/V at t = 0 into slot q mod C. Returns (the clean latent [h, w, C], the cache after)."""
  view = cache_view(inputs.cache, inputs.q)
  speech = inputs.speech[None, None]  # [1, 1, S, D]
  guidance = _guidance(sampler)

  def velocity(x, t):  # x [1, h, w, C], t [1]: the sampler's per-frame layout of one frame
    v, _ = denoiser.cached(params, x[None], t[None], speech, view, guidance)
    return v[0].astype(jnp.float32)

  def body(x, s):
    t, t_next = sampler.schedule[s][None], sampler.schedule[s + 1][None]
    return sampler.step(velocity, x, t, t_next), None

  x, _ = jax.lax.scan(body, inputs.noise[None], jnp.arange(sampler.steps, dtype=jnp.int32))
  _, kv = denoiser.cached(params, x[None], jnp.zeros((1, 1), jnp.float32), speech, view, guidance)
  cache = inputs.cache
  slot = inputs.q % cache.index.shape[-1]
  frames = FrameKV(cache.frames.k.at[:, :, slot].set(kv.k[:, :, 0].astype(cache.frames.k.dtype)),
                   cache.frames.v.at[:, :, slot].set(kv.v[:, :, 0].astype(cache.frames.v.dtype)))
  return x[0], CausalCache(cache.ref, frames, cache.index.at[slot].set(inputs.q))


@functools.partial(jax.jit, static_argnames=("denoiser",))
def advance(denoiser, sampler: Sampler, params, inputs: CausalInputs):
  """:func:`advance_scan` jitted: one program per model config and cache size."""
  return advance_scan(denoiser, sampler, params, inputs)


@functools.partial(jax.jit, static_argnames=("denoiser",))
def advance_batch(denoiser, sampler: Sampler, params, inputs: CausalInputs):
  """:func:`advance` of a batch of independent sessions (``inputs`` stacked on a leading axis)."""
  return jax.vmap(lambda one: advance_scan(denoiser, sampler, params, one))(inputs)


@functools.partial(jax.jit, static_argnames=("denoiser",))
def prime(denoiser, sampler: Sampler, params, z_ref, pre_roll, pre_roll_speech) -> CausalCache:
  """The cache after the pre-roll: one uncached causal pass of [z_R, pre-roll] at t = 0 (z_ref [h, w, C], pre_roll
  [C, h, w, C], pre_roll_speech [C, S, D]); slot a holds pre-roll frame a."""
  x = jnp.concatenate([z_ref[None], pre_roll])[None]  # [1, 1 + C, h, w, C]
  kv = denoiser.frame_kv(params, x, jnp.zeros(x.shape[:2], jnp.float32), pre_roll_speech[None], _guidance(sampler))
  slots = pre_roll.shape[0]
  return CausalCache(FrameKV(kv.k[:, :, :1], kv.v[:, :, :1]), FrameKV(kv.k[:, :, 1:], kv.v[:, :, 1:]),
                     jnp.arange(slots, dtype=jnp.int32))


class CausalWindow:
  """The causal window of one session (module docstring), with :class:`rolling.RollingSampler`'s interface:
  :meth:`push` one speech latent, get the frame it frees; :meth:`job` / :meth:`complete` split it for callers that
  run the advance themselves (batched across sessions). ``pre_roll`` [f − 1, h, w, C] and ``pre_roll_speech``
  [f − 1, S, D] as the rolling window's; the stream indexing (q = f − 1 + r for real latent r) is the same.
  """

  noisy = 1  # one noisy frame: every advance frees the frame it took in

  def __init__(self, denoiser, sampler: Sampler, params: Any, z_ref, pre_roll, pre_roll_speech, key):
    check_causal(sampler, denoiser.model)
    f = pre_roll.shape[0] + 1
    if f < 2:
      raise ValueError(f"clip_frames: a causal window needs at least one cached frame, got f = {f}")
    self.denoiser, self.sampler, self.params, self.key = denoiser, sampler, params, key
    self.clip_frames, self.substeps = f, sampler.steps
    self.shape = tuple(np.shape(z_ref))
    self.cache = prime(denoiser, sampler, params, jnp.asarray(z_ref, jnp.float32), jnp.asarray(pre_roll, jnp.float32),
                       jnp.asarray(pre_roll_speech, jnp.float32))
    self.q = f - 1  # the next latent frame to enter (real latent 0)

  def job(self, speech_latent) -> CausalInputs:
    """The inputs of the advance that takes in latent q with ``speech_latent`` [S, D]."""
    noise = jax.random.normal(jax.random.fold_in(self.key, self.q), self.shape, jnp.float32)
    return CausalInputs(noise, jnp.asarray(speech_latent, jnp.float32), self.cache, jnp.asarray(self.q, jnp.int32))

  def complete(self, job: CausalInputs, result) -> rolling.Emitted:
    """Take the advance's ``result`` (latent, cache); the real frame it freed."""
    latent, self.cache = result
    q = int(job.q)
    self.q = q + 1
    return rolling.Emitted(q, q - (self.clip_frames - 1), latent)

  def push(self, speech_latent) -> rolling.Emitted:
    """Advance by one latent frame (its speech latent [S, D]); the real frame that came out clean."""
    job = self.job(speech_latent)
    return self.complete(job, advance(self.denoiser, self.sampler, self.params, job))


def cache_bytes(model, clip_frames: int, height: int, width: int, dtype=jnp.bfloat16) -> int:
  """Bytes of one session's cache (z_R and C = f − 1 frames, K and V, every block) in ``dtype``."""
  tokens = clip_frames * height * width  # z_R + C frames
  return 2 * model.num_layers * tokens * model.num_heads * model.head_dim * jnp.dtype(dtype).itemsize


__all__ = ["CAUSAL_CFG", "CausalCache", "CausalInputs", "CausalWindow", "EMPTY", "advance", "advance_batch",
           "advance_scan", "cache_bytes", "cache_view", "check_causal", "prime"]
