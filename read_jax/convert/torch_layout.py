"""The one mapping between PyTorch state-dict keys and read_jax (Flax Linen) parameter trees.

Every ported module names its Flax submodules after the PyTorch module path, so a key maps
mechanically:

  torch  ``encoder.down_blocks.0.resnets.1.conv1.conv.weight``   [O, I, kT, kH, kW]
  flax   ``encoder/down_blocks_0/resnets_1/conv1/conv/kernel``  [kT, kH, kW, I, O]

* a numeric path segment joins the one before it with ``_`` (Linen's name for list members);
* ``weight`` becomes ``kernel`` (transposed: Linear [O, I] → [I, O]; ConvNd [O, I, *k] → [*k, I, O]),
  ``scale`` (norms) or ``embedding`` (embedding tables) — whichever the Flax tree holds;
* every other leaf name (``bias``, ``scale_shift_table``, ``latents_mean``, ...) is kept as is;
* modules run under ``nn.scan`` hold their layers stacked on a leading axis: for a ``stacked``
  prefix such as ``transformer_blocks``, torch ``transformer_blocks.3.x.weight`` is row 3 of
  flax ``transformer_blocks/x/kernel``.

``torch_to_flax`` checks the whole key set and every shape and raises one error listing all
mismatches; ``flax_to_torch`` is its exact inverse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from read_jax.files import CheckpointError, flatten, unflatten

_WEIGHT_NAMES = ("kernel", "scale", "embedding")


def _torch_path_to_flax(key: str, stacked: Sequence[str]) -> tuple[str, int | None]:
  """'a.b.0.c.weight' → ('a/b_0/c/weight', None); with stacked prefix 'a.b' → ('a/b/c/weight', 0)."""
  layer = None
  for prefix in stacked:
    m = re.match(re.escape(prefix) + r"\.(\d+)\.(.*)$", key)
    if m:
      layer = int(m.group(1))
      key = f"{prefix}.{m.group(2)}"
      break
  parts: list[str] = []
  for seg in key.split("."):
    if seg.isdigit() and parts:
      parts[-1] = f"{parts[-1]}_{seg}"
    else:
      parts.append(seg)
  return "/".join(parts), layer


# Torch module names that end in _<digits> themselves (not list members); the reverse mapping keeps them.
LITERAL_SEGMENTS = frozenset({"linear_1", "linear_2"})


def _flax_path_to_torch(path: str, literal=LITERAL_SEGMENTS) -> str:
  parts = path.split("/")
  if parts[-1] in _WEIGHT_NAMES:
    parts[-1] = "weight"
  out = []
  for seg in parts:
    m = re.match(r"^(.*)_(\d+)$", seg)
    out.append(f"{m.group(1)}.{m.group(2)}" if m and m.group(1) and seg not in literal else seg)
  return ".".join(out)


def _to_flax_array(value: np.ndarray, leaf: str) -> np.ndarray:
  if leaf == "kernel":
    if value.ndim == 2:
      return value.T
    if value.ndim >= 3:  # ConvNd [O, I, *k] → [*k, I, O]
      return np.transpose(value, tuple(range(2, value.ndim)) + (1, 0))
  return value


def _to_torch_array(value: np.ndarray, leaf: str) -> np.ndarray:
  if leaf == "kernel":
    if value.ndim == 2:
      return value.T
    if value.ndim >= 3:
      n = value.ndim
      return np.transpose(value, (n - 1, n - 2) + tuple(range(n - 2)))
  return value


def torch_to_flax(state_dict: Mapping[str, np.ndarray], target: Mapping, *, stacked: Sequence[str] = (),
                  what: str = "checkpoint") -> dict:
  """Map a torch state dict onto a Flax param tree shaped like ``target`` (arrays or ShapeDtypeStructs)."""
  flat_target = flatten(target)
  expected_shapes = {k: tuple(v.shape) for k, v in flat_target.items()}
  out: dict[str, np.ndarray] = {}
  stacked_rows: dict[str, dict[int, np.ndarray]] = {}
  unexpected, misshaped = [], []
  for key, value in state_dict.items():
    value = np.asarray(value)
    path, layer = _torch_path_to_flax(key, stacked)
    base = path.rsplit("/", 1)
    flax_path = path
    if base[-1] == "weight":
      for name in _WEIGHT_NAMES:
        cand = f"{base[0]}/{name}" if len(base) == 2 else name
        if cand in expected_shapes:
          flax_path = cand
          break
    if flax_path not in expected_shapes:
      unexpected.append(key)
      continue
    arr = _to_flax_array(value, flax_path.rsplit("/", 1)[-1])
    if layer is None:
      if arr.shape != expected_shapes[flax_path]:
        misshaped.append(f"{key}: checkpoint {value.shape} vs model {expected_shapes[flax_path]}")
        continue
      out[flax_path] = arr
    else:
      if arr.shape != expected_shapes[flax_path][1:]:
        misshaped.append(f"{key}: checkpoint {value.shape} vs model {expected_shapes[flax_path][1:]}")
        continue
      stacked_rows.setdefault(flax_path, {})[layer] = arr
  for flax_path, rows in stacked_rows.items():
    n = expected_shapes[flax_path][0]
    if sorted(rows) != list(range(n)):
      missing_rows = sorted(set(range(n)) - set(rows))
      if missing_rows:
        misshaped.append(f"{flax_path}: layers {missing_rows} missing")
        continue
    out[flax_path] = np.stack([rows[i] for i in range(n)])
  missing = sorted(set(expected_shapes) - set(out) - {p for p in stacked_rows})
  if missing or unexpected or misshaped:
    lines = [f"{what}: checkpoint does not match the model"]
    for title, items in (("missing", [_flax_path_to_torch(m) for m in missing]),
                         ("unexpected", sorted(unexpected)), ("mis-shaped", sorted(misshaped))):
      if items:
        lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
    raise CheckpointError("\n".join(lines))
  return unflatten(out)


def _contiguous(a: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(a).reshape(np.shape(a))  # ascontiguousarray alone turns 0-d into (1,)


def flax_to_torch(params: Mapping, *, stacked: Sequence[str] = (),
                  literal=LITERAL_SEGMENTS) -> dict[str, np.ndarray]:
  """Inverse of :func:`torch_to_flax` (numpy arrays, torch layout and names).

  ``literal``: torch module names ending in ``_<digits>`` that are not list members.
  """
  out: dict[str, np.ndarray] = {}
  stacked_flax = {_torch_path_to_flax(p, ())[0]: p for p in stacked}
  for path, value in flatten(params).items():
    value = np.asarray(value)
    leaf = path.rsplit("/", 1)[-1]
    fp = next((fp for fp in stacked_flax if path.startswith(fp + "/")), None)
    if fp is None:
      out[_flax_path_to_torch(path, literal)] = _contiguous(_to_torch_array(value, leaf))
      continue
    rest = _flax_path_to_torch(path[len(fp) + 1:], literal)
    for i in range(value.shape[0]):
      out[f"{stacked_flax[fp]}.{i}.{rest}"] = _contiguous(_to_torch_array(value[i], leaf))
  return out
