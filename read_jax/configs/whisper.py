"""Whisper encoder hyper-parameters (read_jax.models.whisper), one released size per argument.

  get_config("tiny")                 whisper-tiny: d_model 384, 4 layers, 6 heads, ffn 1536, 80 mels,
                                     1500 positions (8,208,384 parameters, as transformers counts them)
  get_config("base" | "small" | "medium" | "large" | "large-v3")
  get_config("test")                 a few-kB encoder for tests: d 24, 2 layers, 1 s windows (50 positions)
  get_config("test,max_source_positions=1500")   ``key=value`` items override any key

Build the module with ``read_jax.models.whisper.encoder_from_config(config)``.
"""

from read_jax.config import parse_arg
from read_jax.models.whisper import SIZES, size_config


def get_config(arg=None):
  items = [s for s in (arg or "tiny").split(",") if s]
  name = items[0] if items and "=" not in items[0] else "tiny"
  if name not in SIZES:
    raise ValueError(f"whisper config: unknown size {name!r}; known: {sorted(SIZES)}")
  overrides = ",".join(s for s in items if "=" in s)
  # kind: the speech encoder's entry in read_jax.convert.speech_encoders (a config section ``speech_encoder``);
  # d_model, num_layers, num_heads, ffn_dim, num_mel_bins, max_source_positions, activation,
  # layer_norm_eps: see read_jax.models.whisper.WhisperEncoder for each key's meaning.
  return parse_arg(overrides, kind="whisper", **size_config(name).to_dict())
