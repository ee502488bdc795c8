"""Weights in and out: diffusers / transformers / original LTX-Video checkpoints ↔ read_jax params.

Public entry points (each returns ``(module, params)``):
  load_vae(path), load_transformer(path), load_whisper_encoder(path)
"""

from read_jax.convert._io import CheckpointError
