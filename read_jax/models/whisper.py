"""Whisper encoder in Flax Linen (docs/design.md §3.2); the speech features S [F, 10, D] built from it:
read_jax.speech.

Submodules carry transformers' module names (``conv1``, ``conv2``, ``embed_positions``,
``layers_<i>/self_attn/q_proj``, ``layers_<i>/fc1``, ``layer_norm``, ...), so
``read_jax.convert.torch_layout.torch_to_flax`` maps a transformers ``WhisperEncoder`` state dict
with no key table. The encoder is frozen everywhere in READ; its outputs can be computed offline.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from read_jax.nn.attention import dot_product_attention

# Encoder hyper-parameters of the released checkpoints (transformers' WhisperConfig names in comments).
SIZES = {
  # name:    (d_model, encoder_layers, encoder_attention_heads, num_mel_bins)
  "tiny": (384, 4, 6, 80),
  "base": (512, 6, 8, 80),
  "small": (768, 12, 12, 80),
  "medium": (1024, 24, 16, 80),
  "large": (1280, 32, 20, 80),  # large, large-v2
  "large-v3": (1280, 32, 20, 128),
  # A ~23k-parameter model for tests; its windows are 1 s (max_source_positions 50), not 30 s.
  "test": (24, 2, 3, 80),
}

# transformers' ``activation_function`` names → jax; "gelu" is the exact (erf) GELU.
ACTIVATIONS = {
  "gelu": functools.partial(jax.nn.gelu, approximate=False),
  "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
  "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
  "relu": jax.nn.relu,
  "silu": jax.nn.silu,
  "swish": jax.nn.silu,
}


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> np.ndarray:
  """``[length, channels]`` Whisper's fixed positional table: [sin | cos] with geometric timescales."""
  if channels % 2:
    raise ValueError(f"sinusoidal positions need an even width, got {channels}")
  inv_timescales = np.exp(-math.log(max_timescale) / (channels // 2 - 1) * np.arange(channels // 2))
  angles = np.arange(length)[:, None] * inv_timescales[None, :]
  return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def _sinusoid_init(key, shape, dtype=jnp.float32):
  del key  # deterministic
  return jnp.asarray(sinusoids(*shape), dtype)


class LayerNorm32(nn.Module):
  """torch.nn.LayerNorm semantics, computed in float32 whatever the compute dtype."""

  eps: float = 1e-5  # added to the variance
  param_dtype: jnp.dtype = jnp.float32  # storage dtype of scale and bias

  @nn.compact
  def __call__(self, x):  # x [..., D]
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)  # biased, as torch
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    return (y * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)


class WhisperAttention(nn.Module):
  """Bidirectional multi-head self-attention; k_proj has no bias, as in Whisper."""

  num_heads: int  # N
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype
  attention_impl: str = "xla"  # see read_jax.nn.attention

  @nn.compact
  def __call__(self, x, tail: int | None = None):  # x [B, L, D]
    """``tail``: only the last ``tail`` positions query (their outputs [B, tail, D]); every position is a key."""
    d = x.shape[-1]
    if d % self.num_heads:
      raise ValueError(f"WhisperAttention: width {d} is not divisible by {self.num_heads} heads")
    dense = functools.partial(nn.Dense, d, dtype=self.dtype, param_dtype=self.param_dtype)
    split = lambda t: t.reshape(t.shape[:-1] + (self.num_heads, d // self.num_heads))  # [B, L, N, K]
    queries = x if tail is None else x[:, -tail:]  # [B, Lq, D]
    q = split(dense(name="q_proj")(queries))
    k = split(dense(use_bias=False, name="k_proj")(x))
    v = split(dense(name="v_proj")(x))
    # transformers scales q by K^-1/2 before the product; the attention function scales the logits:
    # the same numbers up to rounding.
    o = dot_product_attention(q, k, v, implementation=self.attention_impl)  # [B, Lq, N, K]
    return dense(name="out_proj")(o.reshape(queries.shape))  # [B, Lq, D]


class WhisperEncoderLayer(nn.Module):
  """Pre-norm transformer layer: x + attn(LN(x)), then x + fc2(act(fc1(LN(x))))."""

  num_heads: int  # N
  ffn_dim: int  # hidden width of the MLP
  activation: str = "gelu"  # a key of ACTIVATIONS
  layer_norm_eps: float = 1e-5  # every LayerNorm's eps (torch default)
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype
  attention_impl: str = "xla"  # see read_jax.nn.attention

  @nn.compact
  def __call__(self, x, tail: int | None = None):  # x [B, L, D]
    """``tail``: the last ``tail`` positions' outputs only [B, tail, D] (they still attend to every position)."""
    norm = functools.partial(LayerNorm32, eps=self.layer_norm_eps, param_dtype=self.param_dtype)
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype)
    h = norm(name="self_attn_layer_norm")(x)
    attn = WhisperAttention(self.num_heads, self.dtype, self.param_dtype, self.attention_impl, name="self_attn")
    x = (x if tail is None else x[:, -tail:]) + attn(h, tail)
    h = norm(name="final_layer_norm")(x)
    h = dense(self.ffn_dim, name="fc1")(h)  # [B, L, ffn]
    h = ACTIVATIONS[self.activation](h)
    return x + dense(x.shape[-1], name="fc2")(h)  # [B, L, D]


class WhisperEncoder(nn.Module):
  """log-mel ``[B, 2·max_source_positions, num_mel_bins]`` (channels last) → last hidden state ``[B, P, D]``.

  conv1 (k3) → GELU → conv2 (k3, stride 2: 100 Hz → 50 Hz) → GELU → + positions → layers → LayerNorm.
  Whisper needs exactly 2·P mel frames (30 s for the released models); see :func:`encode_long`.
  ``window_positions`` P' < P runs the same weights on a shorter window, 2·P' mel frames → ``[B, P', D]``
  with the first P' positional embeddings (live speech features, ``read_jax.speech.WindowPolicy``): a
  clone with it set, ``encoder.clone(window_positions=P')``, takes the same params. ``output_tail`` T returns
  the last T states only, ``[B, T, D]``, equal to the last T rows of the whole output.
  """

  d_model: int = 384  # D
  num_layers: int = 4  # encoder_layers
  num_heads: int = 6  # encoder_attention_heads
  ffn_dim: int = 1536  # encoder_ffn_dim
  num_mel_bins: int = 80  # input channels
  max_source_positions: int = 1500  # P: output frames per window (50 Hz × 30 s)
  activation: str = "gelu"  # activation_function, a key of ACTIVATIONS
  layer_norm_eps: float = 1e-5  # every LayerNorm's eps
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype
  attention_impl: str = "xla"  # see read_jax.nn.attention
  window_positions: int | None = None  # P' ≤ P output frames per (shorter) input window; None = P
  output_tail: int | None = None  # only the last positions' states [B, tail, D]; None = all

  @property
  def num_positions(self) -> int:
    """Output frames per input window: P' when set, else P."""
    return self.max_source_positions if self.window_positions is None else self.window_positions

  @property
  def num_input_frames(self) -> int:
    return 2 * self.num_positions

  @nn.compact
  def __call__(self, mel):  # mel [B, 2P, n_mels]
    if not 1 <= self.num_positions <= self.max_source_positions:
      raise ValueError(f"WhisperEncoder: window_positions must be in 1 … {self.max_source_positions} (the "
                       f"positional table's length), got {self.window_positions}")
    if mel.ndim != 3 or mel.shape[1:] != (self.num_input_frames, self.num_mel_bins):
      raise ValueError(f"WhisperEncoder: expected log-mel [B, {self.num_input_frames}, {self.num_mel_bins}], "
                       f"got {mel.shape} (pad or cut the audio to the encoder's window: read_jax.speech.window_samples)")
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"WhisperEncoder: activation {self.activation!r} is not one of {sorted(ACTIVATIONS)}")
    act = ACTIVATIONS[self.activation]
    conv = functools.partial(nn.Conv, self.d_model, (3,), padding=((1, 1),), dtype=self.dtype,
                             param_dtype=self.param_dtype)
    x = act(conv(name="conv1")(mel.astype(self.dtype)))  # [B, 2P, D]
    x = act(conv(strides=(2,), name="conv2")(x))  # [B, P, D]
    # A fixed table in every released checkpoint, but a parameter (read from the checkpoint) like in torch.
    pos = nn.Embed(self.max_source_positions, self.d_model, dtype=self.dtype, param_dtype=self.param_dtype,
                   embedding_init=_sinusoid_init, name="embed_positions")(jnp.arange(self.num_positions))
    x = x + pos[None]  # [B, P, D] (P' when window_positions is set)
    for i in range(self.num_layers):
      # With output_tail, the last layer computes only those positions (its queries, MLP and the final norm):
      # a live window's latent frame reads its last 25 of 200 states, a sixth less work for the same values.
      tail = self.output_tail if i == self.num_layers - 1 else None
      x = WhisperEncoderLayer(self.num_heads, self.ffn_dim, self.activation, self.layer_norm_eps, self.dtype,
                              self.param_dtype, self.attention_impl, name=f"layers_{i}")(x, tail)
    if self.output_tail is not None:
      x = x[:, -self.output_tail:]  # the last layer's rows already; all of them with no layers
    return LayerNorm32(self.layer_norm_eps, self.param_dtype, name="layer_norm")(x)  # [B, P or tail, D]


def encoder_from_config(config, *, dtype=jnp.float32, param_dtype=jnp.float32,
                        attention_impl: str = "xla") -> WhisperEncoder:
  """A :class:`WhisperEncoder` from a ConfigDict such as ``read_jax.convert.whisper.whisper_config("tiny")``."""
  return WhisperEncoder(d_model=config.d_model, num_layers=config.num_layers, num_heads=config.num_heads,
                        ffn_dim=config.ffn_dim, num_mel_bins=config.num_mel_bins,
                        max_source_positions=config.max_source_positions, activation=config.activation,
                        layer_norm_eps=config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype,
                        attention_impl=attention_impl)


def size_config(name: str) -> ml_collections.ConfigDict:
  """Encoder hyper-parameters of a named Whisper size (a key of SIZES)."""
  if name not in SIZES:
    raise ValueError(f"unknown Whisper size {name!r}; known: {sorted(SIZES)}")
  d, layers, heads, mels = SIZES[name]
  return ml_collections.ConfigDict(dict(
    d_model=d,  # D, the width of every speech token (384 for tiny)
    num_layers=layers,  # transformer layers
    num_heads=heads,  # attention heads (head dim D / N = 64 in every released size)
    ffn_dim=4 * d,  # MLP hidden width
    num_mel_bins=mels,  # log-mel channels in
    max_source_positions=50 if name == "test" else 1500,  # P: 50 Hz frames per window (30 s → 1500)
    activation="gelu",  # exact (erf) GELU, transformers' "gelu"
    layer_norm_eps=1e-5,  # torch's LayerNorm default, used by transformers' Whisper
  ))


@functools.partial(jax.jit, static_argnames=("encoder",))
def encode(encoder: WhisperEncoder, params, mel):
  """Jitted ``encoder.apply``: log-mel ``[B, 2P, n_mels]`` → ``[B, P, D]`` (one compilation per encoder and shape)."""
  return encoder.apply({"params": params}, mel)
