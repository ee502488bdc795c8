"""Speech features (DESIGN §3.2): the frozen Whisper encoder over audio of any length, cut per video frame.

  encode_long(wave, encoder, params)       Whisper states at 50 Hz, ``[ceil(samples / 320), D]``
  speech_features(wave, encoder, params)   S ``[F, 10, D]``: video frame i sees Whisper states 2i−4 … 2i+5

The signal processing (log-mel, time grids, windows) is ``read_jax.audio``; the network is
``read_jax.models.whisper``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from read_jax import audio
from read_jax.models.whisper import WhisperEncoder, encode


def window_samples(encoder: WhisperEncoder) -> int:
  """Waveform samples per encoder window (480000 = 30 s for the released models)."""
  return encoder.num_input_frames * audio.HOP_LENGTH


def encode_long(wave, encoder: WhisperEncoder, params, batch_size: int = 1):
  """Whisper states at 50 Hz for a waveform of any length: ``[ceil(samples / 320), D]``.

  The waveform is cut into the encoder's fixed windows (30 s for the released models), each turned
  into log-mel exactly as transformers does one 30 s input (the last one zero-padded), encoded
  ``batch_size`` windows at a time by one compiled function (the last batch padded with silent
  windows, so the shape never changes), and the outputs concatenated and trimmed to the real length.
  Host memory stays bounded by one batch of windows whatever the length.
  """
  if batch_size < 1:
    raise ValueError(f"encode_long: batch_size must be ≥ 1, got {batch_size}")
  wave = audio.check_wave(wave, "encode_long")
  n = window_samples(encoder)
  num_samples = wave.shape[0]
  num_windows = -(-num_samples // n)
  num_batches = -(-num_windows // batch_size)
  windows = np.pad(wave, (0, num_batches * batch_size * n - num_samples)).reshape(num_batches, batch_size, n)
  outputs = []
  for batch in windows:  # [batch_size, n]
    mel = audio.log_mel_spectrogram(batch, encoder.num_mel_bins, num_samples=n)  # [batch_size, 2P, n_mels]
    outputs.append(encode(encoder, params, mel).reshape(-1, encoder.d_model))  # [batch_size·P, D]
  return jnp.concatenate(outputs)[:audio.num_whisper_frames(num_samples)]  # [T_w, D]


def speech_features(wave, encoder: WhisperEncoder, params, fps: int = 25, num_frames: int | None = None,
                    batch_size: int = 1):
  """S ``[F, 10, D]``: for video frame i, the Whisper states 2i−4 … 2i+5 (clamped), DESIGN §3.2.

  ``wave``: 16 kHz mono ``[samples]``. ``num_frames`` defaults to F = floor(samples · fps / 16000)
  (:func:`read_jax.audio.num_video_frames`: the frames whose time i/fps lies inside the audio); a
  larger F is allowed, its windows clamp to the last Whisper frame. The 50 Hz grid gives exactly
  two Whisper frames per video frame only at 25 fps, so other rates are refused.
  """
  if fps != 25:
    raise ValueError(f"speech_features: fps must be 25 (Whisper's 50 Hz = 2 frames per video frame), got {fps}")
  hidden = encode_long(wave, encoder, params, batch_size)  # [T_w, D]
  if num_frames is None:
    num_frames = audio.num_video_frames(np.shape(wave)[0], fps)
  return audio.frame_windows(hidden, num_frames)  # [F, 10, D]
