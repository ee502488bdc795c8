"""The constant prompt's T5 embedding, computed once offline from local files (``scripts/encode_prompt.py``).

As LTX-Video's pipeline does, the prompt is padded to ``max_length`` tokens; the file holds
``prompt_embeds`` [L, C] (float32) and ``prompt_attention_mask`` [L] (int64), the names read_jax
(:func:`read_jax.convert.prompt.load_text_embedding`) and diffusers use. Nothing is downloaded: the T5
encoder and its tokenizer come from local directories, checked before PyTorch loads anything, so a
missing piece (the directory, its config, its safetensors weights, a tokenizer file, PyTorch itself,
sentencepiece for a slow tokenizer) is one :class:`~read_jax.errors.InputError` naming it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

import numpy as np

from read_jax.errors import CheckpointError, InputError
from read_jax.files import read_json, safetensors_files, safetensors_metadata, write_safetensors
from read_jax.media import check_output_path

DEFAULT_PROMPT = "A person is talking to the camera, with natural lip movements and facial expressions."
_TORCH_HINT = "pip install 'read_jax[torch]'"


def parse_ids(text: str) -> list[int]:
  """``"3,14,1"`` → [3, 14, 1] (token ids, EOS included)."""
  try:
    ids = [int(x) for x in text.split(",") if x.strip()]
  except ValueError:
    raise InputError(f"--input-ids {text!r}: expected comma-separated integers, e.g. 3,14,1") from None
  if not ids or min(ids) < 0:
    raise InputError(f"--input-ids {text!r}: expected one or more token ids >= 0")
  return ids


def check_t5_dir(t5_dir: str) -> dict:
  """The config of a local T5 encoder directory (transformers layout: config.json + model*.safetensors)."""
  if not os.path.isdir(t5_dir):
    raise CheckpointError(f"--t5 {t5_dir}: no such directory (nothing is downloaded: give a local T5 encoder "
                          "directory, e.g. LTX-Video's text_encoder/)")
  config_path = os.path.join(t5_dir, "config.json")
  if not os.path.isfile(config_path):
    raise CheckpointError(f"{t5_dir}: no config.json (not a transformers T5 encoder directory)")
  config = read_json(config_path)
  if config.get("model_type") != "t5":
    raise CheckpointError(f"{config_path}: model_type is {config.get('model_type')!r}, not 't5'")
  for path in safetensors_files(t5_dir, "model"):  # only safetensors are read: none is a CheckpointError
    safetensors_metadata(path)  # the header, checked against the file's size: a truncated file names itself
  return config


def check_tokenizer_dir(tokenizer_dir: str) -> None:
  """A directory with a T5 tokenizer transformers can load offline: tokenizer.json (fast), or
  spiece.model with sentencepiece installed (slow)."""
  if not os.path.isdir(tokenizer_dir):
    raise InputError(f"--tokenizer {tokenizer_dir}: no such directory")
  if os.path.isfile(os.path.join(tokenizer_dir, "tokenizer.json")):
    return
  if not os.path.isfile(os.path.join(tokenizer_dir, "spiece.model")):
    raise InputError(f"{tokenizer_dir}: no tokenizer.json or spiece.model (pass --tokenizer DIR, e.g. "
                     "LTX-Video's tokenizer/, or --input-ids)")
  if importlib.util.find_spec("sentencepiece") is None:
    raise InputError(f"{tokenizer_dir}: has only spiece.model, which needs sentencepiece, not installed "
                     "(pip install sentencepiece, or pass --input-ids)")


def _require(module: str, why: str) -> None:
  if importlib.util.find_spec(module) is None:
    raise InputError(f"{module}: not installed; {why} ({_TORCH_HINT})")


def encode_prompt(t5_dir: str, out_path: str, prompt: str = DEFAULT_PROMPT, *, tokenizer_dir: str | None = None,
                  max_length: int = 128, input_ids: Sequence[int] | None = None) -> dict[str, np.ndarray]:
  """Write ``prompt_embeds`` [max_length, C] and ``prompt_attention_mask`` [max_length] to ``out_path``
  (atomically); returns them. ``input_ids`` (EOS included) skip the tokenizer."""
  if max_length < 1:
    raise InputError(f"--max-length {max_length}: must be >= 1")
  check_output_path(out_path)
  config = check_t5_dir(t5_dir)
  if input_ids is not None and max(input_ids) >= config.get("vocab_size", np.inf):
    raise InputError(f"--input-ids: id {max(input_ids)} is outside the T5 vocabulary ({config['vocab_size']} tokens)")
  tokenizer_dir = tokenizer_dir or t5_dir
  if input_ids is None:
    check_tokenizer_dir(tokenizer_dir)
  _require("torch", "the T5 encoder runs in PyTorch")
  _require("transformers", "the T5 encoder is loaded with transformers")
  import torch
  import transformers

  transformers.utils.logging.set_verbosity_error()  # its own progress bars and load reports: errors are ours
  transformers.utils.logging.disable_progress_bar()
  if input_ids is None:
    try:
      tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    except (OSError, ValueError) as e:
      raise InputError(f"{tokenizer_dir}: cannot load the T5 tokenizer ({e})") from None
    tok = tokenizer(prompt, padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True,
                    return_tensors="pt")
    ids, mask = tok.input_ids, tok.attention_mask
  else:
    ids = list(input_ids)[:max_length]
    mask = torch.tensor([[1] * len(ids) + [0] * (max_length - len(ids))])
    ids = torch.tensor([ids + [0] * (max_length - len(ids))])  # T5's pad id is 0
  try:
    model = transformers.T5EncoderModel.from_pretrained(t5_dir, local_files_only=True, use_safetensors=True).eval()
  except (OSError, ValueError, RuntimeError) as e:  # transformers' own message, but its load report is silenced
    why = ("tensors of other shapes than its config.json gives" if "mismatched_sizes" in str(e)
           else str(e).strip().splitlines()[0])
    raise CheckpointError(f"{t5_dir}: cannot load the T5 encoder ({why})") from None
  with torch.no_grad():
    embeds = model(input_ids=ids, attention_mask=mask).last_hidden_state  # [1, L, C]
  out = {"prompt_embeds": embeds[0].float().numpy(), "prompt_attention_mask": mask[0].numpy().astype(np.int64)}
  write_safetensors(out_path, out)
  return out
