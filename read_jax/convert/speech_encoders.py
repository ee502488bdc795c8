"""Speech encoders by kind (docs/design.md §3.2): how each is recognised on disk, loaded, saved and initialised.

A read_jax checkpoint holds its speech encoder in the part named by its role, ``speech_encoder/`` (checkpoints
written before it had that name: ``whisper/``), in the encoder's own layout (Whisper: a transformers directory).
What the rest of the system sees is a :class:`read_jax.speech.SpeechEncoder` (audio windows → 50 Hz states).

Adding an encoder: its network in ``read_jax/models/``, a converter that loads and saves its weights, a
``SpeechEncoder`` around it (as :class:`read_jax.speech.WhisperSpeechEncoder`), and one entry in :data:`KINDS`.
A config section (``configs/demo.py``'s ``speech_encoder``) names its ``kind``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp

from read_jax.convert.ctranslate2 import is_ctranslate2_dir
from read_jax.convert.whisper import export_whisper_encoder, load_whisper_encoder
from read_jax.files import CheckpointError, read_json
from read_jax.models import whisper
from read_jax.speech import SpeechEncoder, WhisperSpeechEncoder

PART = "speech_encoder"  # the checkpoint part, by role
LEGACY_PARTS = ("whisper",)  # what older checkpoints called it


@dataclasses.dataclass(frozen=True)
class EncoderKind:
  """What the system needs to know of one kind of speech encoder."""

  recognises: Callable[[str], bool]  # is a saved directory of this kind?
  load: Callable[..., SpeechEncoder]  # (directory, dtype=) → encoder
  save: Callable[[SpeechEncoder, str], None]  # (encoder, directory)
  init: Callable[..., SpeechEncoder]  # (key, config section) → encoder with fresh weights
  width: Callable[[str], int]  # D of a saved directory, from its config alone (nothing loaded)


@functools.partial(jax.jit, static_argnames=("module",))
def _init_whisper(module: whisper.WhisperEncoder, key):
  return module.init(key, jnp.zeros((1, module.num_input_frames, module.num_mel_bins)))["params"]


def _whisper_init(key, config) -> WhisperSpeechEncoder:
  module = whisper.encoder_from_config(config)
  return WhisperSpeechEncoder(module, _init_whisper(module, key))


def _whisper_recognises(path: str) -> bool:
  config = os.path.join(path, "config.json")
  if is_ctranslate2_dir(path):
    return True
  try:
    return os.path.isfile(config) and read_json(config).get("model_type") == "whisper"
  except (OSError, json.JSONDecodeError, CheckpointError):
    return False


def _whisper_width(path: str) -> int:
  if is_ctranslate2_dir(path):
    return load_speech_encoder(path).width  # CTranslate2 keeps the sizes in the tensors only
  return int(read_json(os.path.join(path, "config.json"))["d_model"])


KINDS = {
  "whisper": EncoderKind(
    recognises=_whisper_recognises,
    load=lambda path, dtype=jnp.float32: WhisperSpeechEncoder(*load_whisper_encoder(path, dtype=dtype)),
    save=lambda encoder, path: export_whisper_encoder(encoder.module, jax.tree.map(jax.device_get, encoder.params),
                                                      path),
    init=lambda key, config: _whisper_init(key, config),
    width=_whisper_width),
}


def part_path(ckpt_dir: str) -> str:
  """The speech encoder's directory in a checkpoint (``speech_encoder/``, else an older ``whisper/``); the
  first name when neither is there."""
  for name in (PART,) + LEGACY_PARTS:
    if os.path.isdir(os.path.join(ckpt_dir, name)):
      return os.path.join(ckpt_dir, name)
  return os.path.join(ckpt_dir, PART)


def kind_of(path: str) -> str:
  """The kind of the speech encoder saved in ``path``; one CheckpointError naming the kinds known."""
  if not os.path.isdir(path):
    raise CheckpointError(f"{path}: no such speech encoder directory")
  for name, kind in KINDS.items():
    if kind.recognises(path):
      return name
  raise CheckpointError(f"{path}: not a speech encoder this read_jax reads (known kinds: {sorted(KINDS)})")


def load_speech_encoder(path: str, dtype=jnp.float32) -> SpeechEncoder:
  return KINDS[kind_of(path)].load(path, dtype=dtype)


def save_speech_encoder(encoder: SpeechEncoder, path: str) -> None:
  KINDS[encoder.kind].save(encoder, path)


def init_speech_encoder(key, config) -> SpeechEncoder:
  """Fresh weights from a config section with a ``kind`` (configs/demo.py ``speech_encoder``)."""
  kind = config["kind"] if "kind" in config else "whisper"
  if kind not in KINDS:
    raise CheckpointError(f"speech_encoder.kind: {kind!r} is not a known kind ({sorted(KINDS)})")
  return KINDS[kind].init(key, config)


def encoder_width(path: str) -> int:
  """D of the speech encoder saved in ``path``, from its config."""
  return KINDS[kind_of(path)].width(path)


__all__ = ["KINDS", "LEGACY_PARTS", "PART", "EncoderKind", "encoder_width", "init_speech_encoder", "kind_of",
           "load_speech_encoder", "part_path", "save_speech_encoder"]
