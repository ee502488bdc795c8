"""Weights in and out: diffusers / transformers / original LTX-Video checkpoints ↔ read_jax params.

Public entry points (each loader returns ``(module, params)``); only safetensors (and CTranslate2 model.bin, parsed as bytes) are ever read, nothing is unpickled:
  load_vae(path), export_vae(module, variables, out_dir)                 LTX-Video VAE (diffusers layout)
  load_transformer(path), export_transformer(params, config, out_dir)   LTX-Video transformer → A2V-DiT
  load_whisper_encoder(path), export_whisper_encoder(...)              Whisper encoder (transformers or CTranslate2 layout)
"""

from read_jax.files import CheckpointError
from read_jax.convert.prompt import load_text_embedding
from read_jax.convert.whisper import export_whisper_encoder, load_whisper_encoder, whisper_config
from read_jax.convert.ltx_transformer import export_transformer, load_transformer
from read_jax.convert.vae import export_vae, load_vae
