"""A2V-DiT: LTX-Video transformer blocks plus the frame-level audio cross-attention of Eq. 10.

Reference: diffusers ``LTXVideoTransformer3DModel``. Submodules carry diffusers' module names, so
``torch_to_flax(state_dict, params, stacked=["transformer_blocks"])`` maps LTX weights with no key table:
``proj_in``, ``time_embed/{emb/timestep_embedder/linear_{1,2}, linear}``, ``caption_projection/linear_{1,2}``,
``transformer_blocks/{attn1, attn2}/{to_q, to_k, to_v, norm_q, norm_k, to_out_0}``,
``transformer_blocks/ff/{net_0/proj, net_2}``, ``transformer_blocks/scale_shift_table``,
``scale_shift_table``, ``proj_out``.

Call (docs/design.md §3.4)::

  v = model.apply(variables, x, t, speech, text, text_mask)

  x     [B, T, H, W, C]   latents, T = 1 + f, the reference frame z_R first
  t     [B, T]            per-frame timesteps in [0, 1] (the embedding sees t·1000, as LTX)
  speech [B, T-1, S, A]   speech latents C (S = 2 tokens per latent frame) or None (no audio update)
  text  [B or 1, L, caption_channels] with text_mask [B or 1, L] (True = real token), or a
        :class:`TextKV` from ``model.apply(variables, text, text_mask, method=A2VDiT.encode_text)``
        (the prompt is constant: its per-block keys/values are computed once per generation)
  v     [B, T, H, W, out_channels]

One block (per-frame AdaLN: the 6 modulation vectors are computed per frame, ``[B, T, 6, D]``, and
broadcast over the frame's H·W tokens by a reshape, never materialised per token)::

  h += gate_msa · SelfAttn(RMSNorm(h)·(1 + scale_msa) + shift_msa)      3D RoPE on q and k
  h += TextCrossAttn(h, text)                                           as LTX: no norm, no gate
  h[:, k] += AudioCrossAttn(h[:, k], C_k)   for latent frames k ≥ 1     Eq. 10; frame 0 (z_R) untouched
  h += gate_mlp · FF(RMSNorm(h)·(1 + scale_mlp) + shift_mlp)

Audio cross-attention (``transformer_blocks/audio_attn``), a design choice kept as simple as LTX's
text cross-attention: no norm or AdaLN gate of its own; queries from h (width D), keys/values from C
(width A), RMS QK-norm across heads, N heads × K. Extra parameters per block, exactly:
``to_q`` D·D + D, ``to_k`` A·D + D, ``to_v`` A·D + D, ``to_out_0`` D·D + D, ``norm_q`` D, ``norm_k`` D,
i.e. 2·D·D + 2·A·D + 6·D (16,789,504 for D = A = 2048; 402,948,096 for 24 blocks).
``to_out_0`` starts at zero (kernel and bias), so at initialisation the model computes exactly LTX.
It is computed per frame as a batched tiny attention: queries ``[B·f, H·W, N, K]`` against
``[B·f, S, N, K]``, not as a masked full-length attention.

Text fallback: with no prompt-embedding file, :func:`null_text` is one zero token with an all-False mask; a batch row whose mask is all False gets no text update at all (the whole attn2 output,
bias included, is replaced by 0 with ``where``, so an all-masked softmax cannot leak NaN or a uniform
average). LTX itself never sees an all-masked prompt, so this changes nothing where parity matters.

Logical axis names (map them to mesh axes in the config's sharding rules):
  params       "embed" D, "heads" N·K (attention width), "mlp" FFN / MLP hidden width,
               "adaln" 6·D, "time_freq" sinusoid width, "caption" caption channels, "audio" A,
               "channels" latent channels, "table" rows of a scale_shift_table, "layers" the block stack.
  activations  ("batch", "length", "embed") hidden states, ("batch", "length", "heads", "kv") q/k/v,
               ("batch", "text_length", "embed") projected text.
Remat policies by name: see :data:`REMAT_POLICIES`. Attention implementation: ``attention`` is used
for the self-attention (the heavy one); the two cross-attentions are short (≤ L_text or S keys) and
masked, so they always use "xla".
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jax.ad_checkpoint import checkpoint_name

from read_jax.nn.attention import dot_product_attention
from read_jax.nn.embeddings import TimestepEmbedding, dense, timestep_sinusoid
from read_jax.nn.norms import rms_normalize
from read_jax.nn.rope import apply_rope, ltx_coords, rope_cos_sin

_unroll = contextvars.ContextVar("read_jax_a2v_unroll", default=1)


@contextlib.contextmanager
def unrolled_layers():
  """Trace the block stack unrolled (XLA's cost analysis counts a loop body once: ``read_jax.bench.cost`` lowers
  under this, so every block is counted); the computation is the same."""
  token = _unroll.set(True)
  try:
    yield
  finally:
    _unroll.reset(token)


_cp = jax.checkpoint_policies
REMAT_POLICIES = {
  "none": None,  # no rematerialisation (inference)
  "full": _cp.nothing_saveable,  # recompute the whole block in the backward pass
  "dots_saveable": _cp.dots_saveable,  # keep every matmul output
  "dots_no_batch_dims": _cp.dots_with_no_batch_dims_saveable,  # keep weight matmuls, recompute attention
  "save_qkv": _cp.save_only_these_names("query", "key", "value"),  # keep projected q/k/v only
  "save_qkv_attn": _cp.save_only_these_names("query", "key", "value", "attention"),  # + attention outputs
}


class TextKV(NamedTuple):
  """Per-block keys/values of the text cross-attention, computed once for a constant prompt."""
  k: jax.Array  # [layers, B, L, N·K] key after norm_k
  v: jax.Array  # [layers, B, L, N·K]
  mask: jax.Array  # [B, L] bool, True = real token


class FrameKV(NamedTuple):
  """Self-attention keys and values of whole latent frames, every block: what the causal window caches."""
  k: jax.Array  # [layers, B, F, H·W, N·K] keys after norm_k, before RoPE (rotated where they are attended)
  v: jax.Array  # [layers, B, F, H·W, N·K]


class KVCacheView(NamedTuple):
  """The cached frames a cached pass (:meth:`A2VDiT.cached`) attends to, besides its own.

  The pass's one query frame sits at window position C + 1, z_R at 0 and slot s at ``position[:, s]``: the
  window's last frame, as training's windows have it. Slots are a ring, in any order (attention does not care)."""
  ref: FrameKV  # F = 1: z_R, which attends only to itself, so its K/V are fixed for a session
  frames: FrameKV  # F = C slots
  position: jax.Array  # [B, C] int32 window positions, 1 … C
  valid: jax.Array  # [B, C] bool: the slot holds a frame of the window


class CausalContext(NamedTuple):
  """Masks and rotations of one causal self-attention call, shared by every block (built once per call)."""
  mask: jax.Array  # [B|1, 1, Lq, Lk] bool, True = may attend
  ref_rope: Any = None  # (cos, sin) [H·W, N·K] of z_R's keys at frame 0 (cached pass)
  cache_rope: Any = None  # (cos, sin) [B, C·H·W, N·K] of the cached keys at their window positions (cached pass)
  # Past the window (uncached, T − 1 > window): consecutive groups of query rows, each with its own rotations,
  # ((q_cos, q_sin) [rows, N·K], (k_cos, k_sin) [L, N·K], mask [1, 1, rows, L]), in row order.
  groups: Any = None


def _dtype(d):
  return jnp.dtype(d)


class RMSNormScaled(nn.Module):
  """RMS norm over the last axis with a learned scale (``torch.nn.RMSNorm``), logically named."""

  eps: float = 1e-5  # added to the mean square
  axis_name: str = "heads"  # logical name of the normalised axis
  param_dtype: Any = jnp.float32  # storage dtype of the scale

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, (self.axis_name,)),
                       (x.shape[-1],), _dtype(self.param_dtype))
    y = rms_normalize(x, self.eps).astype(jnp.float32) * scale.astype(jnp.float32)
    return y.astype(x.dtype)


class Attention(nn.Module):
  """LTX attention: q/k/v projections, RMS norm of q and k across all heads, optional RoPE, out projection."""

  num_heads: int  # N
  head_dim: int  # K
  out_features: int  # D, width of the output projection
  context_axis: str = "embed"  # logical name of the key/value input width ("embed" text, "audio" speech)
  zero_out: bool = False  # start to_out_0 at zero (the audio attention: identity at initialisation)
  implementation: str = "xla"  # see read_jax.nn.attention
  eps: float = 1e-5  # QK-norm epsilon (LTX's)
  dtype: Any = jnp.float32  # compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  def setup(self):
    inner = self.num_heads * self.head_dim
    kw = dict(dtype=_dtype(self.dtype), param_dtype=_dtype(self.param_dtype))
    self.to_q = dense(inner, ("embed", "heads"), **kw)
    self.to_k = dense(inner, (self.context_axis, "heads"), **kw)
    self.to_v = dense(inner, (self.context_axis, "heads"), **kw)
    self.norm_q = RMSNormScaled(self.eps, "heads", _dtype(self.param_dtype))
    self.norm_k = RMSNormScaled(self.eps, "heads", _dtype(self.param_dtype))
    out_init = nn.initializers.zeros if self.zero_out else nn.initializers.lecun_normal()
    self.to_out_0 = dense(self.out_features, ("heads", "embed"), kernel_init=out_init, **kw)

  def project_kv(self, context):  # context [B, L, Dc] → k, v [B, L, N·K]
    k = checkpoint_name(self.norm_k(self.to_k(context)), "key")
    v = checkpoint_name(self.to_v(context), "value")
    return k, v

  def __call__(self, x, context=None, mask=None, rope=None, kv=None):
    """x [B, Lq, D]; context [B, Lk, Dc] (None: self-attention) or precomputed kv; mask [B, 1, Lq|1, Lk]."""
    q = checkpoint_name(self.norm_q(self.to_q(x)), "query")
    k, v = kv if kv is not None else self.project_kv(x if context is None else context)
    if rope is not None:
      q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    heads = lambda a: nn.with_logical_constraint(  # noqa: E731
      a.reshape(*a.shape[:-1], self.num_heads, self.head_dim), ("batch", "length", "heads", "kv"))
    o = dot_product_attention(heads(q), heads(k), heads(v).astype(q.dtype), mask,
                              implementation=self.implementation)  # [B, Lq, N, K]
    o = checkpoint_name(o.reshape(*x.shape[:-1], -1), "attention")
    return self.to_out_0(o)  # [B, Lq, D]

  def causal_self(self, x, rope, ctx: "CausalContext", cache=None):
    """Block-causal self-attention (``A2VDiT.causal``, module docstring "Causal streaming").

    x [B, Lq, D]; rope (cos, sin) [Lq, N·K] of the queries; ``ctx`` the masks and rotations of this call;
    ``cache`` this block's (ref_k, ref_v, k, v) [B, HW | C·HW, N·K], keys before RoPE, or None (uncached).
    Returns (out [B, Lq, D], (k, v) [B, Lq, N·K] of x's own tokens, k before RoPE: what a cache stores).
    """
    q = checkpoint_name(self.norm_q(self.to_q(x)), "query")
    k, v = self.project_kv(x)
    qr, kr = apply_rope(q, *rope), apply_rope(k, *rope)
    keys, values = kr, v
    if cache is not None:  # z_R at frame 0, the cached frames at their window positions, then x's own
      ref_k, ref_v, ck, cv = cache
      keys = jnp.concatenate([apply_rope(ref_k.astype(k.dtype), *ctx.ref_rope),
                              apply_rope(ck.astype(k.dtype), *ctx.cache_rope), kr], axis=1)
      values = jnp.concatenate([ref_v.astype(v.dtype), cv.astype(v.dtype), v], axis=1)
    heads = lambda a: nn.with_logical_constraint(  # noqa: E731
      a.reshape(*a.shape[:-1], self.num_heads, self.head_dim), ("batch", "length", "heads", "kv"))
    if ctx.groups is None:
      o = dot_product_attention(heads(qr), heads(keys), heads(values).astype(q.dtype), ctx.mask,
                                implementation=self.implementation)  # [B, Lq, N, K]
    else:  # past the window: each group of query frames rotated (with every key) as the last of its own window
      outs, start = [], 0
      for q_cos, q_sin, k_cos, k_sin, mask in ctx.groups:
        rows = q_cos.shape[0]
        qg, kg = apply_rope(q[:, start:start + rows], q_cos, q_sin), apply_rope(k, k_cos, k_sin)
        outs.append(dot_product_attention(heads(qg), heads(kg), heads(v).astype(q.dtype), mask,
                                          implementation=self.implementation))
        start += rows
      o = jnp.concatenate(outs, axis=1)
    o = checkpoint_name(o.reshape(*x.shape[:-1], -1), "attention")
    return self.to_out_0(o), (k, v)  # [B, Lq, D]


class GELUProj(nn.Module):
  """``proj`` then tanh-approximated GELU (diffusers ``GELU(approximate="tanh")``, i.e. ff.net.0)."""

  features: int  # FFN inner width
  dtype: Any = jnp.float32  # compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):
    h = dense(self.features, ("embed", "mlp"), dtype=self.dtype, param_dtype=self.param_dtype, name="proj")(x)
    return jax.nn.gelu(h, approximate=True)


class FeedForward(nn.Module):
  """net_0 (proj + GELU-tanh) → net_2, inner width 4·D."""

  dim: int  # D
  mult: int = 4  # inner width multiplier
  dtype: Any = jnp.float32  # compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):  # [B, L, D]
    h = GELUProj(self.dim * self.mult, self.dtype, self.param_dtype, name="net_0")(x)
    h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
    return dense(self.dim, ("mlp", "embed"), dtype=self.dtype, param_dtype=self.param_dtype, name="net_2")(h)


class CaptionProjection(nn.Module):
  """linear_1 → GELU-tanh → linear_2 (PixArt-α caption projection)."""

  dim: int  # D
  dtype: Any = jnp.float32  # compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, text):  # [B, L, caption_channels]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = jax.nn.gelu(dense(self.dim, ("caption", "mlp"), name="linear_1", **kw)(text), approximate=True)
    return dense(self.dim, ("mlp", "embed"), name="linear_2", **kw)(h)  # [B, L, D]


class _CombinedTimestepEmbedding(nn.Module):
  """diffusers' PixArtAlphaCombinedTimestepSizeEmbeddings without size conditions: just the MLP."""

  dim: int  # D
  dtype: Any = jnp.float32  # compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, t):
    return TimestepEmbedding(self.dim, dtype=self.dtype, param_dtype=self.param_dtype, name="timestep_embedder")(t)


class AdaLayerNormSingle(nn.Module):
  """adaLN-single: one timestep MLP shared by all blocks → (6·D modulation, D embedding)."""

  dim: int  # D
  dtype: Any = jnp.float32  # compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, t, extra=None):  # t [B, T] already ×1000; extra [B, D] added to every frame's embedding
    emb = _CombinedTimestepEmbedding(self.dim, self.dtype, self.param_dtype, name="emb")(t)  # [B, T, D]
    if extra is not None:
      emb = emb + extra[:, None].astype(emb.dtype)
    mod = dense(6 * self.dim, ("embed", "adaln"), dtype=self.dtype, param_dtype=self.param_dtype,
                name="linear")(jax.nn.silu(emb))  # [B, T, 6·D]
    return mod, emb


GUIDANCE_SCALE = 100.0  # (α, β) enter the sinusoid as 100·α, 100·β: guidance scales ~0–10 span t·1000's range


class GuidanceEmbedding(nn.Module):
  """The guidance scales (α, β) of Split CFG (Eq. 17) as one embedding [B, D], added to the timestep embedding
  (a guidance-distilled student, ``docs/distillation.md``; as FLUX's ``guidance_embedder``).

  sinusoid(100·α) ‖ sinusoid(100·β) → linear_1 → SiLU → linear_2, with linear_2 zero at initialisation: a fresh
  student computes exactly its teacher's conditional branch S(Z, C, z_R), whatever the scales.
  """

  dim: int  # D
  dtype: Any = jnp.float32  # compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, guidance):  # [B, 2] = (α, β)
    g = guidance.astype(jnp.float32) * GUIDANCE_SCALE
    emb = jnp.concatenate([timestep_sinusoid(g[:, 0], 256), timestep_sinusoid(g[:, 1], 256)], -1).astype(self.dtype)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = dense(self.dim, ("time_freq", "mlp"), name="linear_1", **kw)(emb)
    return dense(self.dim, ("mlp", "embed"), name="linear_2", kernel_init=nn.initializers.zeros, **kw)(jax.nn.silu(h))


def _table_init(rows: int):
  def init(key, shape, dtype=jnp.float32):
    return (jax.random.normal(key, shape, jnp.float32) / np.sqrt(shape[-1])).astype(dtype)
  return nn.with_logical_partitioning(init, ("table", "embed"))


class LTXVideoTransformerBlock(nn.Module):
  """One A2V-DiT block (see the module docstring); the body of the ``nn.scan`` over layers."""

  num_heads: int  # N
  head_dim: int  # K
  norm_eps: float = 1e-6  # RMS norm epsilon of norm1/norm2
  implementation: str = "xla"  # self-attention implementation
  dtype: Any = jnp.float32  # compute dtype
  param_dtype: Any = jnp.float32  # storage dtype
  causal: bool = False  # block-causal self-attention (A2VDiT.causal); the block then also returns its (k, v)
  ref_first: bool = True  # frame 0 of h is z_R (no speech); False in a cached pass, whose frames are all latents

  @nn.compact
  def __call__(self, h, temb, rope, text, text_mask, has_text, speech, causal_ctx=None, layer_cache=None):
    """h [B, L, D] carry; temb [B, T, 6·D]; rope (cos, sin) [L, D]; text [B, Lt, D] or this block's (k, v);
    text_mask [B, 1, 1, Lt] or None; has_text [B] bool; speech [B, T-1, S, A] (T with ``ref_first=False``) or
    None; causal_ctx a :class:`CausalContext`, layer_cache this block's cached (ref_k, ref_v, k, v) or None."""
    dim = self.num_heads * self.head_dim
    kw = dict(dtype=_dtype(self.dtype), param_dtype=_dtype(self.param_dtype))
    attn = lambda name, **a: Attention(self.num_heads, self.head_dim, dim, name=name, **a, **kw)  # noqa: E731
    b, length, _ = h.shape
    frames = temb.shape[1]
    per_frame = lambda a: a.reshape(b, frames, length // frames, dim)  # noqa: E731  [B, T, H·W, D]
    h = nn.with_logical_constraint(h, ("batch", "length", "embed"))

    table = self.param("scale_shift_table", _table_init(6), (6, dim), _dtype(self.param_dtype))
    ada = table.astype(temb.dtype) + temb.reshape(b, frames, 6, dim)  # [B, T, 6, D] per frame, not per token
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (ada[:, :, i, None] for i in range(6))

    def modulate(x, scale, shift):  # x [B, L, D]; scale/shift [B, T, 1, D] broadcast over the frame's tokens
      return (per_frame(rms_normalize(x, self.norm_eps)) * (1 + scale) + shift).reshape(b, length, dim)

    attn1 = attn("attn1", implementation=self.implementation)
    kv = None
    if self.causal:
      a, kv = attn1.causal_self(modulate(h, scale_msa, shift_msa), rope, causal_ctx, layer_cache)
    else:
      a = attn1(modulate(h, scale_msa, shift_msa), rope=rope)
    h = h + (per_frame(a) * gate_msa).reshape(b, length, dim)

    attn2 = attn("attn2")
    t_out = attn2(h, kv=text, mask=text_mask) if isinstance(text, tuple) else attn2(h, text, mask=text_mask)
    h = h + jnp.where(has_text[:, None, None], t_out, 0)  # no prompt → no text update (module docstring)

    if speech is not None:  # Eq. 10, per latent frame k ≥ 1: its H·W tokens attend to its S speech tokens
      hf = per_frame(h)
      first = 1 if self.ref_first else 0
      f, s = frames - first, speech.shape[2]
      q_in = hf[:, first:].reshape(b * f, -1, dim)  # [B·f, H·W, D]
      c = speech.reshape(b * f, s, speech.shape[-1]).astype(h.dtype)  # [B·f, S, A]
      a = attn("audio_attn", context_axis="audio", zero_out=True)(q_in, c)
      h = hf.at[:, first:].add(a.reshape(b, f, -1, dim)).reshape(b, length, dim)

    ff = FeedForward(dim, name="ff", **kw)(modulate(h, scale_mlp, shift_mlp))
    h = h + (per_frame(ff) * gate_mlp).reshape(b, length, dim)
    return nn.with_logical_constraint(h, ("batch", "length", "embed")), kv


class _TextKVBlock(nn.Module):
  """Only a block's attn2 key/value path, scanned under the same name so it reads the same params."""

  num_heads: int  # N
  head_dim: int  # K
  dtype: Any = jnp.float32  # compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, carry, states):
    dim = self.num_heads * self.head_dim
    attn2 = Attention(self.num_heads, self.head_dim, dim, dtype=_dtype(self.dtype),
                      param_dtype=_dtype(self.param_dtype), name="attn2")
    return carry, attn2.project_kv(states)


class A2VDiT(nn.Module):
  """The A2V-DiT (docs/design.md §3.4); fields are exactly the keys of ``configs/a2v_dit.py``'s ``config.model``."""

  in_channels: int = 128  # latent channels in
  out_channels: int = 128  # latent channels out (the velocity)
  num_layers: int = 24  # transformer blocks
  num_heads: int = 32  # N
  head_dim: int = 64  # K; the model width D = N·K
  cross_attention_dim: int = 2048  # text key/value width (= D, the caption projection's output)
  caption_channels: int = 4096  # text embedding width (T5-XXL)
  audio_dim: int = 2048  # A, width of a speech latent token
  audio_tokens: int = 2  # S, speech tokens per latent frame
  norm_eps: float = 1e-6  # RMS norm epsilon in the blocks
  fps: float = 25.0  # video frame rate; RoPE frame scale = vae_scale[0] / fps
  vae_scale: tuple = (8, 32, 32)  # pixels per latent (t, h, w): RoPE interpolation scale
  rope_base: tuple = (20, 2048, 2048)  # LTX's RoPE base grid (frames, height, width)
  rope_theta: float = 10000.0  # RoPE frequency base
  attention: str = "xla"  # self-attention implementation: xla / cudnn / splash / auto
  remat: str = "none"  # remat policy name, a key of REMAT_POLICIES
  dtype: Any = "float32"  # compute dtype
  param_dtype: Any = "float32"  # storage dtype
  # A guidance-distilled student (read_jax.train.distill_stage): (α, β) are an input, embedded like the
  # timestep (``guidance_embedder``), and one pass replaces Split CFG's three branches.
  guidance_embeds: bool = False
  # Block-causal self-attention (module docstring, "Causal streaming"): latent frame i sees z_R, the text and
  # frames ≤ i; z_R sees itself. Same parameters either way: a causal student is fine-tuned from a teacher.
  causal: bool = False

  @property
  def dim(self) -> int:
    return self.num_heads * self.head_dim

  def __call__(self, x, t, speech, text, text_mask=None, guidance=None):
    """``guidance [B, 2]`` (α, β): required when ``guidance_embeds``, refused otherwise."""
    return self._forward(x, t, speech, text, text_mask, guidance, encode_only=False)

  def encode_text(self, text, text_mask=None) -> TextKV:
    """Project a (constant) prompt once: per-block text keys/values for ``__call__``'s ``text``."""
    return self._forward(None, None, None, text, text_mask, None, encode_only=True)

  def causal_call(self, x, t, speech, text, text_mask=None, guidance=None, *, window: int | None = None):
    """``__call__`` of a causal model over a sequence longer than its window (module docstring, "Causal
    streaming"): frame i sees z_R and the ``window`` frames up to itself, z_R placed ``min(i, window)`` frames
    before it. Equal to ``__call__`` while T − 1 ≤ window. The reference a cached stream is checked against."""
    return self._forward(x, t, speech, text, text_mask, guidance, encode_only=False, window=window)

  def frame_kv(self, x, t, speech, text, text_mask=None, guidance=None) -> FrameKV:
    """A causal model's per-block self-attention K/V of every frame of x (z_R first), uncached: what a cache
    holds for them (the pre-roll, and z_R). [layers, B, T, H·W, N·K], keys before RoPE."""
    _, (k, v) = self._forward(x, t, speech, text, text_mask, guidance, encode_only=False, want_kv=True)
    b, frames, height, width = x.shape[:4]
    shape = (k.shape[0], b, frames, height * width, k.shape[-1])
    return FrameKV(k.reshape(shape), v.reshape(shape))

  def cached(self, x, t, speech, text, cache: KVCacheView, text_mask=None, guidance=None):
    """One latent frame against a cache of the frames before it (a causal model): x [B, 1, H, W, C] (no z_R), t
    [B, 1], speech [B, 1, S, A]. Returns (v [B, 1, H, W, C], its FrameKV [layers, B, 1, H·W, N·K]): equal to the
    frame's rows of the uncached forward of [z_R, cached frames, x] (``tests/test_causal.py``)."""
    v, (k, vv) = self._forward(x, t, speech, text, text_mask, guidance, encode_only=False, want_kv=True,
                               cache=cache)
    shape = (k.shape[0],) + x.shape[:2] + (x.shape[2] * x.shape[3], k.shape[-1])
    return v, FrameKV(k.reshape(shape), vv.reshape(shape))

  def _blocks(self, body, in_axes):
    return nn.scan(body, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=in_axes,
                   length=self.num_layers, metadata_params={nn.PARTITION_NAME: "layers"}, unroll=_unroll.get())

  @nn.compact
  def _forward(self, x, t, speech, text, text_mask, guidance, *, encode_only: bool, want_kv: bool = False,
               cache: KVCacheView | None = None, window: int | None = None):
    dt, pdt = _dtype(self.dtype), _dtype(self.param_dtype)
    kw = dict(dtype=dt, param_dtype=pdt)
    if self.cross_attention_dim != self.dim:
      raise ValueError(f"cross_attention_dim {self.cross_attention_dim} must equal num_heads·head_dim "
                       f"{self.dim}: the caption projection outputs the model width")
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"remat policy {self.remat!r} is not one of {sorted(REMAT_POLICIES)}")
    caption_projection = CaptionProjection(self.dim, name="caption_projection", **kw)

    if encode_only or not isinstance(text, TextKV):
      if text is None or text.ndim != 3 or text.shape[-1] != self.caption_channels:
        raise ValueError(f"text must be [B, L, {self.caption_channels}] (or a TextKV), got "
                         f"{None if text is None else text.shape}")
      mask = jnp.ones(text.shape[:2], bool) if text_mask is None else text_mask.astype(bool)
      states = nn.with_logical_constraint(caption_projection(text.astype(dt)), ("batch", "text_length", "embed"))
    if encode_only:
      blocks = self._blocks(_TextKVBlock, nn.broadcast)(self.num_heads, self.head_dim, name="transformer_blocks", **kw)
      _, (k, v) = blocks(None, states)
      return TextKV(k, v, mask)

    b, frames, height, width, channels = x.shape
    if channels != self.in_channels:
      raise ValueError(f"x has {channels} channels, the model expects in_channels={self.in_channels}")
    if t.shape != (b, frames):
      raise ValueError(f"t must be per-frame [B, T] = {(b, frames)}, got {t.shape}")
    if (want_kv or cache is not None or window is not None) and not self.causal:
      raise ValueError("frame K/V, cached passes and causal windows need a causal A2V-DiT (causal=True)")
    if cache is not None and frames != 1:
      raise ValueError(f"a cached pass takes one latent frame (the window's last), got {frames}")
    speech_frames = frames if cache is not None else frames - 1
    if speech is not None and (speech.ndim != 4 or speech.shape[:2] != (b, speech_frames)
                               or speech.shape[-1] != self.audio_dim):
      raise ValueError(f"speech must be [B, {'T' if cache is not None else 'T-1'}, S, A] = [{b}, {speech_frames}, "
                       f"S, {self.audio_dim}], got {speech.shape}")
    length = frames * height * width

    if isinstance(text, TextKV):
      k, v = (jnp.broadcast_to(a, (a.shape[0], b) + a.shape[2:]) for a in (text.k, text.v))
      mask = jnp.broadcast_to(text.mask, (b,) + text.mask.shape[1:])
      text_arg, text_axis = (k, v), 0  # sliced per block by the scan
    else:
      mask = jnp.broadcast_to(mask, (b,) + mask.shape[1:])
      text_arg, text_axis = jnp.broadcast_to(states, (b,) + states.shape[1:]), nn.broadcast
    # Batch-sharded like h: unconstrained, XLA all-gathers the whole global batch of h in the backward
    # pass of the text gate below (bf16[B_global, L, D] per chip; 8.5 GiB at 2 per chip on v5e-256).
    has_text = nn.with_logical_constraint(jnp.any(mask, axis=-1), ("batch",))  # [B]

    if self.guidance_embeds != (guidance is not None):
      raise ValueError("this A2V-DiT " + ("is a guidance-distilled student: pass guidance [B, 2] = (α, β)"
                                          if self.guidance_embeds else "has no guidance embedding (guidance_embeds="
                                          "False): it takes no guidance input; use CFG branches instead"))
    g_emb = None
    if guidance is not None:
      if guidance.shape != (b, 2):
        raise ValueError(f"guidance must be [B, 2] = [{b}, 2] (α, β), got {guidance.shape}")
      g_emb = GuidanceEmbedding(self.dim, name="guidance_embedder", **kw)(guidance)  # [B, D]

    h = dense(self.dim, ("channels", "embed"), name="proj_in", **kw)(x.reshape(b, length, channels).astype(dt))
    temb, emb = AdaLayerNormSingle(self.dim, name="time_embed", **kw)(t * 1000.0, g_emb)  # [B, T, 6·D], [B, T, D]
    scale = (self.vae_scale[0] / self.fps, self.vae_scale[1], self.vae_scale[2])
    with jax.ensure_compile_time_eval():  # static shapes only: a constant of the compiled program
      rope = rope_cos_sin(ltx_coords(frames, height, width, scale=scale, base=self.rope_base), self.dim,
                          self.rope_theta)

    body = LTXVideoTransformerBlock
    policy = REMAT_POLICIES[self.remat]
    if self.remat != "none":
      body = nn.remat(body, policy=policy, prevent_cse=False)
    in_axes = (nn.broadcast, nn.broadcast, text_axis, nn.broadcast, nn.broadcast, nn.broadcast)
    if not self.causal:
      blocks = self._blocks(body, in_axes)(self.num_heads, self.head_dim, self.norm_eps, self.attention,
                                           name="transformer_blocks", **kw)
      h, _ = blocks(h, temb, rope, text_arg, mask[:, None, None, :], has_text, speech)
    else:
      if cache is not None:
        rope, ctx = _cached_context(cache, height, width, scale, self.rope_base, self.dim, self.rope_theta)
        layer_cache = (cache.ref.k[:, :, 0], cache.ref.v[:, :, 0],
                       cache.frames.k.reshape(cache.frames.k.shape[:2] + (-1, self.dim)),
                       cache.frames.v.reshape(cache.frames.v.shape[:2] + (-1, self.dim)))  # [layers, B, L*, N·K]
      else:
        ctx, layer_cache = _causal_context(frames, height, width, scale, self.rope_base, self.dim,
                                           self.rope_theta, window), None
      blocks = self._blocks(body, in_axes + (nn.broadcast, nn.broadcast if layer_cache is None else 0))(
        self.num_heads, self.head_dim, self.norm_eps, self.attention, causal=True, ref_first=cache is None,
        name="transformer_blocks", **kw)
      h, kv = blocks(h, temb, rope, text_arg, mask[:, None, None, :], has_text, speech, ctx, layer_cache)

    table = self.param("scale_shift_table", _table_init(2), (2, self.dim), pdt)
    ada = table.astype(emb.dtype) + emb[:, :, None]  # [B, T, 2, D]
    shift, scale_ = ada[:, :, 0, None], ada[:, :, 1, None]  # [B, T, 1, D]
    h32 = h.astype(jnp.float32)  # norm_out: LayerNorm without affine, in float32
    mean = jnp.mean(h32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(h32 - mean), axis=-1, keepdims=True)
    hn = ((h32 - mean) * jax.lax.rsqrt(var + 1e-6)).astype(dt).reshape(b, frames, height * width, self.dim)
    hn = (hn * (1 + scale_) + shift).reshape(b, length, self.dim)
    out = dense(self.out_channels, ("embed", "channels"), name="proj_out", **kw)(hn)
    out = out.reshape(b, frames, height, width, self.out_channels)
    return (out, kv) if want_kv else out


def _frame_coords(index, height: int, width: int, scale, base):
  """RoPE coordinates [..., H·W, 3] of the tokens of frames at (traced) window positions ``index`` [...], with
  the float32 operations of :func:`ltx_coords` (index·scale, then / base), so a rotation matches its angles."""
  grid = ltx_coords(1, height, width, scale=scale, base=base)  # [H·W, 3], frame coordinate 0
  f = jnp.asarray(index).astype(jnp.float32) * jnp.float32(scale[0]) / jnp.float32(base[0])  # [...]
  f = jnp.broadcast_to(f[..., None, None], f.shape + (height * width, 1))
  return jnp.concatenate([f, jnp.broadcast_to(grid[:, 1:], f.shape[:-1] + (2,))], axis=-1)


def _causal_context(frames: int, height: int, width: int, scale, base, dim: int, theta: float,
                    window: int | None) -> CausalContext:
  """The uncached block-causal masks of [z_R, T − 1 frames] (static shapes: compile-time constants).

  Frame i ≥ 1 sees z_R and frames max(1, i − window + 1) … i; z_R sees itself. Past the window (T − 1 > window)
  frame i is computed as the last frame of the window that ends at it, as a cached pass computes it: it and
  every other frame rotated s = i − window frames back (z_R stays at 0), so its window sits at positions
  1 … window, the angles a cached pass uses, bit for bit."""
  i, j = np.arange(frames)[:, None], np.arange(frames)[None, :]
  band = np.ones_like(i - j, bool) if window is None else (i - j < window)
  seen = ((i == 0) & (j == 0)) | ((i >= 1) & ((j == 0) | ((j >= 1) & (j <= i) & band)))  # [T, T]
  hw = height * width
  tokens = lambda m: np.repeat(np.repeat(m, hw, 0), hw, 1)  # noqa: E731  [Tq, Tk] → [Lq, Lk]
  if window is None or frames - 1 <= window:
    return CausalContext(jnp.asarray(tokens(seen))[None, None])
  groups = []
  with jax.ensure_compile_time_eval():
    for shift in range(frames - window):
      rows = np.arange(window + 1) if shift == 0 else np.asarray([window + shift])  # query frames of this shift
      at = np.where(np.arange(frames) == 0, 0, np.arange(frames) - shift)  # every frame's position, z_R at 0
      k_rope = rope_cos_sin(_frame_coords(at, height, width, scale, base).reshape(-1, 3), dim, theta)
      q_rope = rope_cos_sin(_frame_coords(at[rows], height, width, scale, base).reshape(-1, 3), dim, theta)
      groups.append(q_rope + k_rope + (jnp.asarray(tokens(seen[rows]))[None, None],))
  return CausalContext(jnp.asarray(tokens(seen))[None, None], groups=tuple(groups))


def _cached_context(cache: KVCacheView, height: int, width: int, scale, base, dim: int, theta: float):
  """(rope of the query frame at window position C + 1, the cached pass's CausalContext)."""
  b, slots = cache.position.shape
  hw = height * width
  with jax.ensure_compile_time_eval():
    rope = rope_cos_sin(_frame_coords(slots + 1, height, width, scale, base), dim, theta)  # [H·W, N·K]
    ref_rope = rope_cos_sin(_frame_coords(0, height, width, scale, base), dim, theta)
  cos, sin = rope_cos_sin(_frame_coords(cache.position, height, width, scale, base).reshape(-1, 3), dim, theta)
  cache_rope = (cos.reshape(b, slots * hw, dim), sin.reshape(b, slots * hw, dim))
  seen = cache.valid & (cache.position >= 1) & (cache.position <= slots)  # [B, C]
  mask = jnp.concatenate([jnp.ones((b, hw), bool), jnp.repeat(seen, hw, axis=1), jnp.ones((b, hw), bool)], axis=1)
  return rope, CausalContext(mask[:, None, None, :], ref_rope=ref_rope, cache_rope=cache_rope)


def denoise(model: A2VDiT, params, x, t, speech, guidance=None):
  """The ANS sampler's denoiser (``read_jax.ans.sampling``): ``params = (A2V-DiT params, the constant
  prompt's per-block text K/V from :meth:`A2VDiT.encode_text`)``, so the prompt is projected once per
  generation, not once per step. ``guidance [B, 2]``: a distilled student's (α, β) (CFG mode "distilled")."""
  dit_params, text_kv = params
  return model.apply({"params": dit_params}, x, t, speech, text_kv, guidance=guidance)


@dataclasses.dataclass(frozen=True)
class Denoiser:
  """:func:`denoise` bound to a model, as a value: equal models give equal (and equally hashed) denoisers, so
  the sampler's jitted programs, which take the denoiser as a static argument, are compiled once per model
  config and shared by every pipeline and session of that config."""

  model: A2VDiT

  def __call__(self, params, x, t, speech, guidance=None):
    return denoise(self.model, params, x, t, speech, guidance)

  def frame_kv(self, params, x, t, speech, guidance=None) -> FrameKV:
    """:meth:`A2VDiT.frame_kv` with :func:`denoise`'s ``params``."""
    dit_params, text_kv = params
    return self.model.apply({"params": dit_params}, x, t, speech, text_kv, guidance=guidance,
                            method=A2VDiT.frame_kv)

  def cached(self, params, x, t, speech, cache: KVCacheView, guidance=None):
    """:meth:`A2VDiT.cached` with :func:`denoise`'s ``params``: (v, the frame's FrameKV)."""
    dit_params, text_kv = params
    return self.model.apply({"params": dit_params}, x, t, speech, text_kv, cache, guidance=guidance,
                            method=A2VDiT.cached)


def full_size_fields(**overrides) -> dict:
  """The paper's A2V-DiT (docs/design.md §2: 24 blocks, 32 heads × 64, speech tokens 2 × 2048) as ``A2VDiT`` fields:
  the dataclass defaults, with ``attention="auto"`` (the best implementation for the device)."""
  fields = {f.name: f.default for f in dataclasses.fields(A2VDiT) if f.name not in ("parent", "name")}
  return {**fields, "attention": "auto", **overrides}


def build_model(model_config) -> A2VDiT:
  """``A2VDiT`` from ``config.model`` (a ConfigDict or dict with exactly A2VDiT's fields)."""
  cfg = dict(model_config)
  for key in ("vae_scale", "rope_base"):
    cfg[key] = tuple(cfg[key])
  return A2VDiT(**cfg)


def dummy_inputs(model: A2VDiT, *, batch: int = 1, frames: int = 2, height: int = 2, width: int = 2,
                 text_len: int = 2):
  """Zero inputs of the right shapes (speech included, so init creates the audio attention); a student's
  guidance goes by keyword (:func:`dummy_kwargs`)."""
  x = jnp.zeros((batch, frames, height, width, model.in_channels), jnp.float32)
  t = jnp.zeros((batch, frames), jnp.float32)
  speech = jnp.zeros((batch, frames - 1, model.audio_tokens, model.audio_dim), jnp.float32)
  text = jnp.zeros((batch, text_len, model.caption_channels), jnp.float32)
  mask = jnp.ones((batch, text_len), bool)
  return x, t, speech, text, mask


def dummy_kwargs(model: A2VDiT, *, batch: int = 1) -> dict:
  """The keyword inputs a model needs besides :func:`dummy_inputs`: a student's zero guidance [B, 2]."""
  return {"guidance": jnp.zeros((batch, 2), jnp.float32)} if model.guidance_embeds else {}


@functools.partial(jax.jit, static_argnames=("model",))
def init_params(model: A2VDiT, key) -> dict:
  """Unboxed float params (``nn.Partitioned`` metadata removed); jitted once per model config."""
  return nn.unbox(model.init(key, *dummy_inputs(model), **dummy_kwargs(model))["params"])


def param_shapes(model: A2VDiT) -> dict:
  """Unboxed ShapeDtypeStructs of the params, without allocating them (``jax.eval_shape``)."""
  boxed = jax.eval_shape(lambda k: model.init(k, *dummy_inputs(model), **dummy_kwargs(model)),
                         jax.random.key(0))["params"]
  return nn.unbox(boxed)


def null_text(caption_channels: int):
  """No text conditioning: one zero token with an all-False mask, for which the model adds no text update
  (see the module docstring). ``(text [1, 1, caption_channels], mask [1, 1] bool)``."""
  return jnp.zeros((1, 1, caption_channels), jnp.float32), jnp.zeros((1, 1), bool)


def text_inputs(prompt_embeds, prompt_attention_mask, caption_channels: int, what: str = "prompt"):
  """The constant prompt as the model takes it: ``(text [1, L, caption_channels], mask [1, L] bool)``.

  ``prompt_embeds`` [L, C] or [1, L, C] and ``prompt_attention_mask`` [L] / [1, L] or None (all tokens
  valid): diffusers' pipeline names. ``what`` names the source in errors.
  """
  text = np.asarray(prompt_embeds, np.float32)
  text = text.reshape(1, -1, text.shape[-1])
  if text.shape[-1] != caption_channels:
    raise ValueError(f"{what}: width {text.shape[-1]}, the model expects {caption_channels}")
  mask = (np.ones(text.shape[:2], bool) if prompt_attention_mask is None
          else np.asarray(prompt_attention_mask).reshape(1, -1).astype(bool))
  return jnp.asarray(text), jnp.asarray(mask)