"""Whisper encoder weights from a Hugging Face Whisper directory (config.json + model*.safetensors) or a
CTranslate2 one (model.bin + config.json, as faster-whisper uses: read_jax.convert.ctranslate2)."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections

from read_jax.convert import ctranslate2
from read_jax.convert.torch_layout import flax_to_torch, torch_to_flax
from read_jax.files import CheckpointError, read_safetensors, safetensors_files, write_json, write_safetensors
from read_jax.models import whisper

# Where the encoder lives in each transformers class: WhisperForConditionalGeneration, WhisperModel,
# and a bare WhisperEncoder (no prefix). Decoder and head keys are never read.
_ENCODER_PREFIXES = ("model.encoder.", "encoder.", "")


def whisper_config(name: str) -> ml_collections.ConfigDict:
  """Encoder hyper-parameters of a named size: "tiny" (d 384, 4 layers, 6 heads, ffn 1536, 80 mels,
  1500 positions), "base", "small", "medium", "large", "large-v3", or "test" (a few-kB model whose
  windows are 1 s)."""
  return whisper.size_config(name)


def config_from_hf(hf: dict, what: str = "config.json") -> ml_collections.ConfigDict:
  """Our encoder ConfigDict from a transformers ``WhisperConfig`` dict."""
  if hf.get("model_type", "whisper") != "whisper":
    raise CheckpointError(f"{what}: model_type is {hf.get('model_type')!r}, not 'whisper'")
  names = {"d_model": "d_model", "num_layers": "encoder_layers", "num_heads": "encoder_attention_heads",
           "ffn_dim": "encoder_ffn_dim", "num_mel_bins": "num_mel_bins",
           "max_source_positions": "max_source_positions"}
  missing = sorted(v for v in names.values() if v not in hf)
  if missing:
    raise CheckpointError(f"{what}: missing Whisper config fields {missing}")
  config = ml_collections.ConfigDict({ours: int(hf[theirs]) for ours, theirs in names.items()})
  config.activation = hf.get("activation_function", "gelu")
  if config.activation not in whisper.ACTIVATIONS:
    raise CheckpointError(f"{what}: activation_function {config.activation!r} is not supported "
                          f"(known: {sorted(whisper.ACTIVATIONS)})")
  config.layer_norm_eps = 1e-5  # transformers builds Whisper's LayerNorms with torch's default eps
  return config


def encoder_param_shapes(encoder: whisper.WhisperEncoder):
  """The encoder's param tree as ShapeDtypeStructs (nothing is computed)."""
  mel = jax.ShapeDtypeStruct((1, encoder.num_input_frames, encoder.num_mel_bins), jnp.float32)
  return jax.eval_shape(encoder.init, jax.random.key(0), mel)["params"]


def load_whisper_encoder(path: str, dtype=jnp.float32, param_dtype=jnp.float32, attention_impl: str = "xla"):
  """``(WhisperEncoder, params)`` from a transformers or a CTranslate2 Whisper directory.

  transformers: ``config.json`` and ``model*.safetensors`` (sharded or not) of a WhisperForConditionalGeneration,
  WhisperModel or WhisperEncoder checkpoint. CTranslate2 (told apart by its ``model.bin``): the encoder's
  size is inferred from the tensors, its config.json holding only decoding settings. Only the encoder's
  tensors are loaded. A mismatch raises one :class:`CheckpointError` listing every missing, unexpected and
  mis-shaped key.
  """
  if not os.path.isdir(path):
    raise CheckpointError(f"{path}: not a directory (expected a Hugging Face or CTranslate2 Whisper checkpoint)")
  if ctranslate2.is_ctranslate2_dir(path):
    hf, state = ctranslate2.read_whisper_encoder(path)
    config = config_from_hf(hf, path)
  else:
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
      raise CheckpointError(f"{path}: no config.json (nor a CTranslate2 model.bin)")
    with open(config_path) as fh:
      config = config_from_hf(json.load(fh), config_path)
    state = _encoder_state(path)
  encoder = whisper.encoder_from_config(config, dtype=dtype, param_dtype=param_dtype,
                                        attention_impl=attention_impl)
  params = torch_to_flax(state, encoder_param_shapes(encoder), what=f"{path} (Whisper encoder)")
  return encoder, jax.tree.map(lambda a: jnp.asarray(a, param_dtype), params)


def _encoder_state(path: str) -> dict:
  """The encoder's tensors of a transformers Whisper directory, keys relative to the encoder."""
  files = safetensors_files(path, "model")
  for prefix in _ENCODER_PREFIXES:
    state = read_safetensors(files, key_prefix=prefix)
    if "conv1.weight" in state:
      return state
  raise CheckpointError(f"{path}: no Whisper encoder weights (looked for "
                        + ", ".join(f"'{p}conv1.weight'" for p in _ENCODER_PREFIXES) + ")")


def export_whisper_encoder(encoder: whisper.WhisperEncoder, params, out_dir: str) -> None:
  """Write the encoder as a transformers Whisper directory (``config.json`` + ``model.safetensors``,
  keys under ``model.encoder.``) that :func:`load_whisper_encoder` and transformers read back.

  Only the encoder is written; the config carries Whisper's decoder defaults sized like the encoder,
  so ``WhisperModel.from_pretrained(..., strict=False)``-style loaders can build the full model.
  """
  os.makedirs(out_dir, exist_ok=True)
  tensors = {f"model.encoder.{k}": v for k, v in flax_to_torch(params).items()}
  write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors, metadata={"format": "pt"})
  write_json(os.path.join(out_dir, "config.json"), {
      "model_type": "whisper", "architectures": ["WhisperModel"],
      "d_model": encoder.d_model, "encoder_layers": encoder.num_layers,
      "encoder_attention_heads": encoder.num_heads, "encoder_ffn_dim": encoder.ffn_dim,
      "decoder_layers": encoder.num_layers, "decoder_attention_heads": encoder.num_heads,
      "decoder_ffn_dim": encoder.ffn_dim, "num_mel_bins": encoder.num_mel_bins,
      "max_source_positions": encoder.max_source_positions, "activation_function": encoder.activation})
