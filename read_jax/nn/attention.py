"""One attention function for every model, with a selectable implementation.

``implementation``:
  * ``"xla"``   plain einsum + float32 softmax; runs everywhere, the reference for the others.
  * ``"cudnn"`` ``jax.nn.dot_product_attention(implementation="cudnn")`` (flash attention on GPU).
  * ``"splash"`` the Pallas splash-attention kernel on TPU (no mask).
  * ``"auto"``  cudnn on GPU, splash on TPU when there is no mask, xla otherwise.

The platform is the one being compiled for: ``jax.default_backend()``, unless
:func:`compilation_target` names another (``read_jax.aot`` compiles for TPU slices from a CPU host,
where the default backend is ``cpu``).
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

IMPLEMENTATIONS = ("auto", "xla", "cudnn", "splash")
# Splash kernel blocks are multiples of 128 tokens (one TPU lane row); shorter sequences are padded.
_SPLASH_BLOCK = 128

_target = contextvars.ContextVar("read_jax_attention_target", default=None)


@contextlib.contextmanager
def compilation_target(platform: str):
  """Pick implementations for ``platform`` ("tpu", "gpu", "cpu") instead of ``jax.default_backend()``."""
  token = _target.set(platform)
  try:
    yield
  finally:
    _target.reset(token)


def target_platform() -> str:
  return _target.get() or jax.default_backend()


def resolve(implementation: str, masked: bool = False) -> str:
  """The implementation ``implementation`` stands for on the target platform (``masked``: a mask is given)."""
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation {implementation!r} is not one of {IMPLEMENTATIONS}")
  if implementation == "auto":
    platform = target_platform()
    if platform == "gpu":
      return "cudnn"
    return "splash" if platform == "tpu" and not masked else "xla"
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
  impl = resolve(implementation, mask is not None)
  if impl == "cudnn":
    if mask is not None:  # cuDNN takes the mask as a bias of full query × key extent (H100: [B,1,1,L] is refused)
      mask = jnp.broadcast_to(mask, mask.shape[:-2] + (q.shape[1], k.shape[1]))
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn")
  if impl == "splash":
    if target_platform() != "tpu":
      raise ValueError(f"attention implementation 'splash' needs a TPU target, not {target_platform()!r}")
    if mask is not None:
      raise ValueError("attention implementation 'splash' supports no mask; use 'xla' for masked attention")
    return _splash_attention(q, k, v)
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum("bqnk,blnk->bnql", q, k, preferred_element_type=jnp.float32) * scale
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return jnp.einsum("bnql,blnk->bqnk", probs, v)


def _splash_attention(q, k, v, *, interpret: bool = False):
  """Pallas splash attention of ``[B, L, N, K]`` q/k/v, per device under the current mesh.

  A Pallas kernel has no SPMD partitioning rule (XLA would gather its inputs onto every device), so
  under a mesh it runs in a ``shard_map`` over the mesh axes that the logical rules give the
  ``"batch"`` and ``"heads"`` axes (those ``read_jax.models`` constrain q/k/v to); the sequence stays
  whole. ``interpret`` runs the kernel in the Pallas interpreter (tests on CPU).
  """
  mesh = jax.sharding.get_abstract_mesh()
  local = lambda q, k, v: _splash_local(q, k, v, interpret=interpret)  # noqa: E731
  if mesh.empty:
    return local(q, k, v)
  spec = nn.logical_to_mesh_axes(("batch", None, "heads", None))
  spec = P(*(_divisible_axes(axes, dim, mesh) for axes, dim in zip(spec, q.shape)))
  return jax.shard_map(local, in_specs=(spec, spec, spec), out_specs=spec, check_vma=False)(q, k, v)


def _divisible_axes(axes, dim: int, mesh):
  """``axes`` (a mesh axis name, a tuple of them, or None) if their sizes divide ``dim``, else None."""
  names = (axes,) if isinstance(axes, str) else tuple(axes or ())
  return axes if dim % math.prod(mesh.shape[a] for a in names) == 0 else None


def _splash_local(q, k, v, *, interpret: bool):
  """Splash attention on one device's ``[B, L, N, K]`` q/k/v, sequences padded to whole kernel blocks.

  Padded keys get segment id 1 so real queries never see them; padded queries (segment 1 too, when
  there are padded keys to attend to) are dropped from the output.
  """
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

  b, lq, n, kd = q.shape
  lk = k.shape[1]
  pad_q, pad_k = -lq % _SPLASH_BLOCK, -lk % _SPLASH_BLOCK
  segments = None
  if pad_q or pad_k:
    pad = lambda a, p: jnp.pad(a, ((0, 0), (0, p), (0, 0), (0, 0)))  # noqa: E731
    q, k, v = pad(q, pad_q), pad(k, pad_k), pad(v, pad_k)
    segments = sk.SegmentIds(q=((jnp.arange(lq + pad_q) >= lq) & (pad_k > 0)).astype(jnp.int32),
                             kv=(jnp.arange(lk + pad_k) >= lk).astype(jnp.int32))
  mask = sm.MultiHeadMask([sm.FullMask((lq + pad_q, lk + pad_k))] * n)
  kernel = sk.make_splash_mha(mask=mask, head_shards=1, q_seq_shards=1, interpret=interpret)
  heads_first = lambda a: jnp.swapaxes(a, 1, 2)  # noqa: E731  [B, N, L, K], the kernel's layout
  out = jax.vmap(kernel, in_axes=(0, 0, 0, None))(heads_first(q) * (kd ** -0.5), heads_first(k),
                                                   heads_first(v), segments)
  return jnp.swapaxes(out, 1, 2)[:, :lq].astype(q.dtype)  # [B, Lq, N, K]
