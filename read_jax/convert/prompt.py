"""The constant text prompt (docs/design.md §2): a T5 embedding computed once, offline
(``scripts/encode_prompt.py``)."""

from __future__ import annotations

import os
import warnings

from read_jax.files import CheckpointError, read_safetensors
from read_jax.models.a2v_dit import null_text, text_inputs


def load_text_embedding(path: str | None, caption_channels: int):
  """The constant prompt: ``(text [1, L, caption_channels], mask [1, L] bool)`` from a safetensors file.

  ``path``: a file with ``prompt_embeds`` [L, C] or [1, L, C] and optionally ``prompt_attention_mask``
  [L] / [1, L] (diffusers' pipeline names). Empty or None: no text conditioning
  (:func:`read_jax.models.a2v_dit.null_text`), with a warning.
  """
  if not path:
    warnings.warn("no prompt embedding file: text cross-attention is switched off (zero text, all-False mask)")
    return null_text(caption_channels)
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: prompt embedding file: no such file")
  tensors = read_safetensors(path)
  if "prompt_embeds" not in tensors:
    raise CheckpointError(f"{path}: no 'prompt_embeds' tensor (has {sorted(tensors)})")
  try:
    return text_inputs(tensors["prompt_embeds"], tensors.get("prompt_attention_mask"), caption_channels, what=path)
  except ValueError as e:
    raise CheckpointError(str(e)) from None
