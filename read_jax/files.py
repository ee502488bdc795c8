"""Checkpoint files: safetensors and JSON, read and written in one place (the lowest layer that needs it).

Only safetensors are ever read: no file is unpickled. Reads turn every way a file can be wrong (missing,
truncated, corrupt, NaN/inf tensors, bad JSON) into one :class:`~read_jax.errors.CheckpointError` that
names the file (and the tensor). Writes are atomic: a temporary file beside the target, renamed into
place once complete, removed if the write fails (disk full, interrupt); the file gets the user's usual
mode (umask), like any other file they create.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from read_jax.errors import CheckpointError

__all__ = ["CheckpointError", "safetensors_files", "read_safetensors", "safetensors_metadata", "read_json",
           "read_diffusers_dir", "check_keys", "atomic_path", "write_safetensors", "write_json", "flatten",
           "unflatten"]


def safetensors_files(directory: str, prefix: str) -> list[str]:
  """The ``prefix*.safetensors`` files of a model directory (through its ``.index.json`` when sharded)."""
  index = [f for f in os.listdir(directory) if f.startswith(prefix) and f.endswith(".safetensors.index.json")]
  if index:
    weight_map = read_json(os.path.join(directory, index[0])).get("weight_map")
    if not isinstance(weight_map, dict):
      raise CheckpointError(f"{os.path.join(directory, index[0])}: no 'weight_map' object")
    return sorted({os.path.join(directory, f) for f in weight_map.values()})
  files = sorted(os.path.join(directory, f) for f in os.listdir(directory)
                 if f.startswith(prefix) and f.endswith(".safetensors"))
  if not files:
    raise CheckpointError(f"{directory}: no {prefix}*.safetensors file (only safetensors are read; "
                          "convert .bin/.pt files to safetensors first)")
  return files


@contextlib.contextmanager
def _open(path: str) -> Iterator:
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: no such file")
  try:
    with safe_open(path, framework="numpy") as fh:
      yield fh
  except (SafetensorError, OSError) as e:
    raise CheckpointError(f"{path}: not a readable safetensors file ({e}); truncated or corrupt?") from None


def read_safetensors(paths: str | Iterable[str], key_prefix: str = "", check_finite: bool = True
                     ) -> dict[str, np.ndarray]:
  """All tensors of one or more safetensors files as float32/int numpy arrays.

  Keys starting with ``key_prefix`` are kept, with the prefix removed; bfloat16/float16 tensors are
  widened to float32. With ``check_finite`` a tensor holding NaN or inf is an error naming it (a
  checkpoint gone bad fails at load, not as a black video).
  """
  if isinstance(paths, str):
    paths = [paths]
  out: dict[str, np.ndarray] = {}
  for path in paths:
    with _open(path) as fh:
      for key in fh.keys():
        if not key.startswith(key_prefix):
          continue
        try:
          value = fh.get_tensor(key)
        except TypeError:  # bfloat16 has no numpy dtype: go through the raw bytes
          value = _read_bf16(path, key)
        if value.dtype == np.float16:
          value = value.astype(np.float32)
        if check_finite and value.dtype.kind == "f" and not np.isfinite(value).all():
          bad = int(np.size(value) - np.isfinite(value).sum())
          raise CheckpointError(f"{path}: tensor {key} holds {bad} NaN/inf value(s) of {np.size(value)}")
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
  with _open(path) as fh:
    return dict(fh.metadata() or {})


def read_json(path: str) -> dict:
  """A JSON object from a file; a missing file, bad JSON or a non-object is a CheckpointError naming it."""
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: no such file")
  try:
    with open(path) as fh:
      obj = json.load(fh)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(obj, dict):
    raise CheckpointError(f"{path}: expected a JSON object, got {type(obj).__name__}")
  return obj


def read_diffusers_dir(directory: str, weights_prefix: str = "diffusion_pytorch_model"):
  """(config dict, tensors) of a diffusers/transformers model directory."""
  if not os.path.isdir(directory):
    raise CheckpointError(f"{directory}: not a directory")
  config_path = os.path.join(directory, "config.json")
  if not os.path.isfile(config_path):
    raise CheckpointError(f"{directory}: no config.json")
  return read_json(config_path), read_safetensors(safetensors_files(directory, weights_prefix))


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


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yield a temporary path beside ``path``; on success rename it onto ``path``, on any failure remove it.

  An existing ``path`` is untouched until the new file is complete. The temporary name keeps the suffix
  (tools that pick a format by extension still work) and is unique to this process.
  """
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
  stem, ext = os.path.splitext(path)
  tmp = f"{stem}.tmp{os.getpid()}{ext}"
  try:
    yield tmp
    os.chmod(tmp, _user_file_mode())  # some writers (safetensors, mkstemp) create files 0600
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def _user_file_mode() -> int:
  """0o666 less the process umask: the mode ``open(path, "w")`` would give a new file."""
  mask = os.umask(0)
  os.umask(mask)
  return 0o666 & ~mask


def write_safetensors(path: str, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None):
  """Write atomically (:func:`atomic_path`). 0-d tensors stay 0-d."""
  with atomic_path(path) as tmp:
    save_file({k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in tensors.items()}, tmp,
              metadata=dict(metadata or {}))


def file_sha256(path: str) -> str:
  """Hex sha256 of a file, read in 1 MiB pieces (weight files and videos: tens of MB)."""
  digest = hashlib.sha256()
  with open(path, "rb") as fh:
    for block in iter(lambda: fh.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def write_json(path: str, obj) -> None:
  """Write atomically (:func:`atomic_path`), indented, keys sorted."""
  with atomic_path(path) as tmp:
    with open(tmp, "w") as fh:
      json.dump(obj, fh, indent=2, sort_keys=True)


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
