"""One attention function for every model, with a selectable implementation.

``implementation``:
  * ``"xla"``   plain einsum + float32 softmax; runs everywhere, the reference for the others.
  * ``"cudnn"`` ``jax.nn.dot_product_attention(implementation="cudnn")`` (flash attention on GPU).
  * ``"splash"`` the Pallas splash-attention kernel on TPU.
  * ``"auto"``  cudnn on GPU, xla elsewhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("auto", "xla", "cudnn", "splash")


def _resolve(implementation: str) -> str:
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation {implementation!r} is not one of {IMPLEMENTATIONS}")
  if implementation == "auto":
    return "cudnn" if jax.default_backend() == "gpu" else "xla"
  return implementation


def dot_product_attention(q, k, v, mask=None, *, implementation: str = "xla"):
  """Scaled dot-product attention.

  Args:
    q: ``[B, Lq, N, K]`` queries.
    k, v: ``[B, Lk, N, K]`` keys and values.
    mask: optional boolean, broadcastable to ``[B, N, Lq, Lk]``; True means "may attend".
    implementation: see the module docstring.

  Returns:
    ``[B, Lq, N, K]`` in the dtype of ``q``.
  """
  impl = _resolve(implementation)
  if impl == "cudnn":
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn")
  if impl == "splash":
    return _splash_attention(q, k, v, mask)
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum("bqnk,blnk->bnql", q, k, preferred_element_type=jnp.float32) * scale
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return jnp.einsum("bnql,blnk->bqnk", probs, v)


def _splash_attention(q, k, v, mask):
  """Pallas splash attention (TPU only). Masks are not supported by this path."""
  if jax.default_backend() != "tpu":
    raise ValueError("attention implementation 'splash' needs a TPU backend")
  if mask is not None:
    raise ValueError("attention implementation 'splash' supports no mask; use 'xla' for masked attention")
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

  b, lq, n, kd = q.shape
  lk = k.shape[1]
  kernel = sk.make_splash_mha(mask=sm.MultiHeadMask([sm.FullMask((lq, lk))] * n), head_shards=1, q_seq_shards=1)
  qt = jnp.swapaxes(q, 1, 2) * (kd ** -0.5)
  out = jax.vmap(kernel)(qt, jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2))
  return jnp.swapaxes(out, 1, 2).astype(q.dtype)
