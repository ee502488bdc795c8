"""read_jax's own on-disk layout for one module: ``config.json`` (constructor fields) + ``model.safetensors``.

Used for the parts that have no PyTorch original (SpeechAE, the A2V-DiT with its audio attention)
inside a read_jax checkpoint directory. Keys are the Flax param paths joined by ``/``; arrays are
stored as they are (float32 unless the params are narrower), so a save/load round trip is exact.

``config.json`` is ``{"format_version": 1, "kind": "speech_ae", "config": {constructor fields}}`` (files
without ``format_version`` are version 1). Loading checks everything a later step would otherwise trip
over deep inside jit, each a :class:`~read_jax.errors.CheckpointError` naming the file: a newer format
version, unknown or missing fields, weights that do not have the shapes their own config implies,
corrupt/truncated files and NaN/inf tensors (:func:`read_jax.files.read_safetensors`). Whether parts fit
*each other* (the SpeechAE's latent width = the A2V-DiT's audio width, ...) is :func:`fit_problems`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.files import CheckpointError, check_keys, flatten, read_json, read_safetensors, unflatten, \
  write_json, write_safetensors
from read_jax.models import a2v_dit
from read_jax.models.speech_ae import SpeechAE

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1  # of config.json; a reader refuses a newer one rather than guess what changed
_TOP_FIELDS = ("config", "format_version", "kind")
MODULES = {"speech_ae": SpeechAE, "a2v_dit": a2v_dit.A2VDiT}  # kind → the Linen module its config builds
_NOT_CONFIG = ("parent", "name")  # Linen's own dataclass fields


def save_module(out_dir: str, kind: str, config: Mapping, params: Mapping) -> None:
  """Write ``{"format_version", "kind", "config"}`` and the params of one module into ``out_dir``."""
  os.makedirs(out_dir, exist_ok=True)
  tensors = {k: np.asarray(v) for k, v in flatten(params).items()}
  write_safetensors(os.path.join(out_dir, WEIGHTS_NAME), tensors, metadata={"format": "read_jax", "kind": kind})
  write_json(os.path.join(out_dir, CONFIG_NAME), {"format_version": FORMAT_VERSION, "kind": kind,
                                                  "config": plain(config)})


def read_config(path: str, kind: str) -> dict:
  """The constructor fields in ``path``/config.json, checked: format version, kind, known and required fields."""
  config_path = os.path.join(path, CONFIG_NAME)
  if not os.path.isdir(path):
    raise CheckpointError(f"{path}: no such module directory")
  if not os.path.isfile(config_path):
    raise CheckpointError(f"{path}: no {CONFIG_NAME} (not a read_jax module directory)")
  meta = read_json(config_path)
  version = meta.get("format_version", 1)
  if not isinstance(version, int) or isinstance(version, bool) or version < 1:
    raise CheckpointError(f"{config_path}: format_version must be a positive integer, got {version!r}")
  if version > FORMAT_VERSION:
    raise CheckpointError(f"{config_path}: format_version {version} is newer than this read_jax reads "
                          f"({FORMAT_VERSION}); update read_jax")
  unknown = sorted(set(meta) - set(_TOP_FIELDS))
  if unknown:
    raise CheckpointError(f"{config_path}: unknown field(s) {unknown} (known: {', '.join(_TOP_FIELDS)})")
  if meta.get("kind") != kind:
    raise CheckpointError(f"{config_path}: holds a {meta.get('kind')!r}, expected {kind!r}")
  config = meta.get("config")
  if not isinstance(config, dict):
    raise CheckpointError(f"{config_path}: no \"config\" object of {kind} fields")
  if kind in MODULES:
    fields = {f.name: f for f in dataclasses.fields(MODULES[kind]) if f.name not in _NOT_CONFIG}
    unknown = sorted(set(config) - set(fields))
    if unknown:
      raise CheckpointError(f"{config_path}: unknown {kind} field(s) {unknown} in \"config\" "
                            f"(known: {', '.join(sorted(fields))})")
    required = [n for n, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = sorted(set(required) - set(config))
    if missing:
      raise CheckpointError(f"{config_path}: \"config\" lacks {kind} field(s) {missing}")
  return config


def param_shapes(kind: str, config: Mapping) -> dict:
  """The param ShapeDtypeStructs a ``kind`` module built from ``config`` has (``jax.eval_shape``: nothing
  is allocated or compiled)."""
  if kind == "speech_ae":
    model = SpeechAE(**config)
    s = jax.ShapeDtypeStruct((1, 1, model.window, model.feature_dim), jnp.float32)
    return jax.eval_shape(lambda s: model.init(jax.random.key(0), s), s)["params"]
  if kind == "a2v_dit":
    return a2v_dit.param_shapes(a2v_dit.build_model(config))
  raise ValueError(f"no param shapes for module kind {kind!r} (known: {sorted(MODULES)})")


def load_module(path: str, kind: str, expected: Mapping | None = None) -> tuple[dict, dict]:
  """``(config, params)`` of a directory written by :func:`save_module`.

  Every key and shape is checked against ``expected`` (a param tree of arrays or ShapeDtypeStructs;
  default: the shapes the directory's own config implies), so a part whose weights do not match its
  config fails here, naming the tensors, not later inside jit.
  """
  config = read_config(path, kind)
  flat = read_safetensors(os.path.join(path, WEIGHTS_NAME))
  if expected is None and kind in MODULES:
    expected = param_shapes(kind, config)
  if expected is not None:
    check_keys(path, flat, {k: tuple(v.shape) for k, v in flatten(expected).items()})
  return config, unflatten(flat)


def fit_problems(configs: Mapping[str, Mapping | None]) -> list[str]:
  """How the parts of one checkpoint directory do not fit each other (empty: they fit).

  ``configs``: part → its config (``None`` or absent: not there): ``speech_ae`` and ``a2v_dit`` as in their
  config.json ``"config"``, ``speech_encoder`` its ``{"width": D}``, ``vae`` its diffusers config.json. Each
  problem names both parts and the widths.
  """
  sae, dit, encoder, vae = (configs.get(p) for p in ("speech_ae", "a2v_dit", "speech_encoder", "vae"))
  problems = []
  if sae and dit and (sae["latent_tokens"], sae["latent_dim"]) != (dit["audio_tokens"], dit["audio_dim"]):
    problems.append(f"speech_ae latent [{sae['latent_tokens']}, {sae['latent_dim']}] vs a2v_dit audio "
                    f"[{dit['audio_tokens']}, {dit['audio_dim']}] (audio_tokens, audio_dim)")
  if sae and encoder and sae["feature_dim"] != encoder["width"]:
    problems.append(f"speech_ae feature_dim {sae['feature_dim']} vs speech_encoder width {encoder['width']}")
  if dit and vae and "latent_channels" in vae:
    for field in ("in_channels", "out_channels"):
      if dit[field] != vae["latent_channels"]:
        problems.append(f"a2v_dit {field} {dit[field]} vs vae latent_channels {vae['latent_channels']}")
  return problems


def plain(obj):
  if isinstance(obj, Mapping):
    return {str(k): plain(v) for k, v in obj.items()}
  if isinstance(obj, (tuple, list)):
    return [plain(v) for v in obj]
  if isinstance(obj, np.generic):
    return obj.item()
  if hasattr(obj, "dtype") and not isinstance(obj, (str, bytes)):  # a dtype object
    return np.dtype(obj).name
  return obj
