"""read_jax's own on-disk layout for one module: ``config.json`` (constructor fields) + ``model.safetensors``.

Used for the parts that have no PyTorch original (SpeechAE, the A2V-DiT with its audio attention)
inside a read_jax checkpoint directory. Keys are the Flax param paths joined by ``/``; arrays are
stored as they are (float32 unless the params are narrower), so a save/load round trip is exact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np

from read_jax.files import CheckpointError, check_keys, flatten, read_safetensors, unflatten, write_json, \
  write_safetensors

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def save_module(out_dir: str, kind: str, config: Mapping, params: Mapping) -> None:
  """Write ``{"kind": kind, "config": config}`` and the params of one module into ``out_dir``."""
  os.makedirs(out_dir, exist_ok=True)
  tensors = {k: np.asarray(v) for k, v in flatten(params).items()}
  write_safetensors(os.path.join(out_dir, WEIGHTS_NAME), tensors, metadata={"format": "read_jax", "kind": kind})
  write_json(os.path.join(out_dir, CONFIG_NAME), {"kind": kind, "config": _plain(config)})


def load_module(path: str, kind: str, expected: Mapping | None = None) -> tuple[dict, dict]:
  """``(config, params)`` of a directory written by :func:`save_module`; ``expected`` (a param tree of
  arrays or ShapeDtypeStructs) checks every key and shape."""
  config_path = os.path.join(path, CONFIG_NAME)
  if not os.path.isfile(config_path):
    raise CheckpointError(f"{path}: no {CONFIG_NAME} (not a read_jax module directory)")
  with open(config_path) as fh:
    meta = json.load(fh)
  if meta.get("kind") != kind:
    raise CheckpointError(f"{config_path}: holds a {meta.get('kind')!r}, expected {kind!r}")
  flat = read_safetensors(os.path.join(path, WEIGHTS_NAME))
  if expected is not None:
    check_keys(path, flat, {k: tuple(v.shape) for k, v in flatten(expected).items()})
  return meta["config"], unflatten(flat)


def _plain(obj):
  if isinstance(obj, Mapping):
    return {str(k): _plain(v) for k, v in obj.items()}
  if isinstance(obj, (tuple, list)):
    return [_plain(v) for v in obj]
  if isinstance(obj, np.generic):
    return obj.item()
  if hasattr(obj, "dtype") and not isinstance(obj, (str, bytes)):  # a dtype object
    return np.dtype(obj).name
  return obj
