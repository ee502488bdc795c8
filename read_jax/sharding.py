"""Device mesh, logical-axis rules and the shardings of params, train state and batches.

The mesh has three named axes (docs/design.md §3.6):
  ``data``    pure data parallelism: params replicated, batch split;
  ``fsdp``    batch split *and* params split (ZeRO-3 style), gathered by XLA when used;
  ``tensor``  params split along model dimensions (heads, MLP width) through the logical rules.
Modules name their param axes logically (``nn.with_logical_partitioning``); the config's rules map
those names to mesh axes. Params that carry no annotation go through a fallback policy chosen by
name from :data:`FALLBACK_POLICIES`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from read_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
# The batch dimension is split over both data-parallel axes.
BATCH_AXES = ("data", "fsdp")


def make_mesh(mesh_config, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Mesh from ``config.mesh`` (keys data/fsdp/tensor; one size may be -1 = all remaining devices).

  A mesh of explicit sizes smaller than the devices of a single process runs on the first devices (a tiny config
  with ``data=1`` trains on one device of a machine with several); on several processes (a pod, a cluster) the
  sizes must use every device, or the mesh is an error.
  """
  devices = list(jax.devices() if devices is None else devices)
  sizes = [int(mesh_config[name]) for name in MESH_AXES]
  if sizes.count(-1) > 1:
    raise ConfigError(f"config.mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 not in sizes and 0 < known < len(devices) and jax.process_count() == 1:
    devices = devices[:known]
  if -1 in sizes:
    if len(devices) % known:
      raise ConfigError(f"config.mesh {dict(zip(MESH_AXES, sizes))}: {len(devices)} devices are not "
                       f"divisible by {known}")
    sizes[sizes.index(-1)] = len(devices) // known
  if int(np.prod(sizes)) != len(devices):
    raise ConfigError(f"config.mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} devices, "
                     f"{len(devices)} are available")
  return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3,
                       devices=devices)


def logical_rules(sharding_config) -> tuple[tuple[str, Any], ...]:
  """``config.sharding.rules`` as the tuple of (logical name, mesh axis | tuple | None) pairs flax wants."""
  rules = []
  for pair in sharding_config.rules:
    name, axes = pair
    rules.append((name, tuple(axes) if isinstance(axes, list) else axes))
  return tuple(rules)


# --- un-annotated params --------------------------------------------------------------------------

def _replicated(shape, mesh) -> P:
  del shape, mesh
  return P()


def _fsdp_largest_dim(shape, mesh) -> P:
  """Split the largest dimension the ``fsdp`` axis divides; replicate small or indivisible arrays."""
  n = mesh.shape["fsdp"]
  if n == 1 or not shape or int(np.prod(shape)) < 1024:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % n == 0:
      spec = [None] * len(shape)
      spec[dim] = "fsdp"
      return P(*spec)
  return P()


# Policy for params without ``nn.with_logical_partitioning``, chosen by ``config.sharding.fallback``.
FALLBACK_POLICIES: dict[str, Callable[[tuple[int, ...], Mesh], P]] = {
    "replicated": _replicated,
    "fsdp_largest": _fsdp_largest_dim,
}


def tree_shardings(abstract_tree, mesh: Mesh, rules, fallback: str = "fsdp_largest"):
  """NamedShardings for a (possibly boxed) abstract pytree, in the structure of its unboxed form.

  ``nn.Partitioned`` leaves use their logical names and ``rules``; plain leaves (scalars, counters,
  un-annotated params and their optimizer moments) use the fallback policy. Optimizer moments of an
  annotated param are themselves boxed (optax maps over the boxes), so they follow the param.
  """
  if fallback not in FALLBACK_POLICIES:
    raise ConfigError(f"config.sharding.fallback={fallback!r} is not one of {sorted(FALLBACK_POLICIES)}")
  policy = FALLBACK_POLICIES[fallback]

  def one(leaf):
    if isinstance(leaf, nn.Partitioned) and not hasattr(leaf.value, "shape"):
      return leaf.value  # optax.MaskedNode: a frozen param's (absent) optimizer moment, an empty subtree
    if isinstance(leaf, nn.Partitioned):
      spec = nn.logical_to_mesh_axes(leaf.names, rules)
      return NamedSharding(mesh, _drop_indivisible(spec, leaf.value.shape, mesh))
    return NamedSharding(mesh, policy(tuple(getattr(leaf, "shape", ())), mesh))

  return jax.tree.map(one, abstract_tree, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def _drop_indivisible(spec: P, shape, mesh: Mesh) -> P:
  """Replicate a dimension whose size the mapped mesh axes do not divide (e.g. odd tiny-config widths)."""
  out = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = (axes,) if isinstance(axes, str) else (axes or ())
    size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
    out.append(axes if dim % size == 0 else None)
  return P(*out)


# --- batches ----------------------------------------------------------------------------------------

def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
  """Leading (batch) dimension over ``data`` × ``fsdp``, the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Process-local numpy batch → global jax arrays split over ``data`` × ``fsdp``.

  Each process holds ``global_batch / process_count`` rows (grain shards by process), which
  ``make_array_from_process_local_data`` stitches into one global array.
  """
  return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(v)), np.asarray(v))
          for k, v in batch.items()}


def batch_shardings(batch_spec: dict[str, jax.ShapeDtypeStruct], mesh: Mesh) -> dict[str, NamedSharding]:
  return {k: batch_sharding(mesh, len(v.shape)) for k, v in batch_spec.items()}
