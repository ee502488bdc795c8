"""Reading and writing safetensors checkpoints, and checking key sets.

Only safetensors are ever read: no file is unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


class CheckpointError(ValueError):
  """A checkpoint that cannot be loaded: missing file, missing/unexpected/mis-shaped keys."""


def _safetensors_files(directory: str, prefix: str) -> list[str]:
  index = [f for f in os.listdir(directory) if f.startswith(prefix) and f.endswith(".safetensors.index.json")]
  if index:
    with open(os.path.join(directory, index[0])) as fh:
      weight_map = json.load(fh)["weight_map"]
    return sorted({os.path.join(directory, f) for f in weight_map.values()})
  files = sorted(os.path.join(directory, f) for f in os.listdir(directory)
                 if f.startswith(prefix) and f.endswith(".safetensors"))
  if not files:
    raise CheckpointError(f"{directory}: no {prefix}*.safetensors file (only safetensors are read; "
                          "convert .bin/.pt files to safetensors first)")
  return files


def read_safetensors(paths: str | Iterable[str], key_prefix: str = "") -> dict[str, np.ndarray]:
  """All tensors of one or more safetensors files as float32/int numpy arrays.

  Keys starting with ``key_prefix`` are kept, with the prefix removed; bfloat16/float16 tensors are
  widened to float32.
  """
  if isinstance(paths, str):
    paths = [paths]
  out: dict[str, np.ndarray] = {}
  for path in paths:
    if not os.path.isfile(path):
      raise CheckpointError(f"{path}: no such file")
    with safe_open(path, framework="numpy") as fh:
      for key in fh.keys():
        if not key.startswith(key_prefix):
          continue
        try:
          value = fh.get_tensor(key)
        except TypeError:  # bfloat16 has no numpy dtype: go through the raw bytes
          value = _read_bf16(path, key)
        if value.dtype in (np.float16,):
          value = value.astype(np.float32)
        out[key[len(key_prefix):]] = value
  return out


def _read_bf16(path: str, key: str) -> np.ndarray:
  import ml_dtypes  # shipped with jax
  with open(path, "rb") as fh:
    header_len = int.from_bytes(fh.read(8), "little")
    header = json.loads(fh.read(header_len))
    info = header[key]
    start, end = info["data_offsets"]
    fh.seek(8 + header_len + start)
    raw = fh.read(end - start)
  if info["dtype"] != "BF16":
    raise CheckpointError(f"{path}: tensor {key} has unsupported dtype {info['dtype']}")
  return np.frombuffer(raw, dtype=ml_dtypes.bfloat16).reshape(info["shape"]).astype(np.float32)


def safetensors_metadata(path: str) -> dict[str, str]:
  with safe_open(path, framework="numpy") as fh:
    return dict(fh.metadata() or {})


def read_diffusers_dir(directory: str, weights_prefix: str = "diffusion_pytorch_model"):
  """(config dict, tensors) of a diffusers/transformers model directory."""
  if not os.path.isdir(directory):
    raise CheckpointError(f"{directory}: not a directory")
  config_path = os.path.join(directory, "config.json")
  if not os.path.isfile(config_path):
    raise CheckpointError(f"{directory}: no config.json")
  with open(config_path) as fh:
    config = json.load(fh)
  return config, read_safetensors(_safetensors_files(directory, weights_prefix))


def check_keys(what: str, got: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]]):
  """Raise one CheckpointError listing every missing, unexpected and mis-shaped key."""
  missing = sorted(set(expected) - set(got))
  unexpected = sorted(set(got) - set(expected))
  misshaped = sorted(f"{k}: checkpoint {tuple(got[k].shape)} vs model {tuple(expected[k])}"
                     for k in set(got) & set(expected) if tuple(got[k].shape) != tuple(expected[k]))
  if missing or unexpected or misshaped:
    lines = [f"{what}: checkpoint does not match the model"]
    for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
      if items:
        lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
    raise CheckpointError("\n".join(lines))


def write_safetensors(path: str, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None):
  """Write atomically: a temporary file renamed into place."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  save_file({k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in tensors.items()}, tmp, metadata=dict(metadata or {}))
  os.replace(tmp, path)


def write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as fh:
    json.dump(obj, fh, indent=2, sort_keys=True)
  os.replace(tmp, path)


def flatten(tree: Mapping, sep: str = "/") -> dict[str, np.ndarray]:
  """Nested dict → {"a/b/c": array}."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      for kk, vv in flatten(v, sep).items():
        out[f"{k}{sep}{kk}"] = vv
    else:
      out[str(k)] = v
  return out


def unflatten(flat: Mapping[str, np.ndarray], sep: str = "/") -> dict:
  out: dict = {}
  for key, value in flat.items():
    node = out
    *parents, leaf = key.split(sep)
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out
