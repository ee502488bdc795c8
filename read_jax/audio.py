"""Audio front end (DESIGN §3.2): files → 16 kHz mono float32 → Whisper log-mel → per-video-frame windows.

Time grids, all anchored at t = 0:
  * samples at 16 kHz;
  * log-mel frames at 100 Hz (hop 160): frame m is the STFT window centred on sample 160·m;
  * Whisper frames at 50 Hz (the encoder's stride-2 conv): frame j is centred on mel frame 2j, time j/50 s;
  * video frames at 25 fps: frame i (time i/25 s) is centred on Whisper frame 2i, and its speech
    window is Whisper frames 2i−4 … 2i+5, clamped at the ends (S ∈ R^{F×10×384} in the paper).
"""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np

from read_jax.errors import AudioError  # re-exported: read_jax.audio.AudioError

SAMPLE_RATE = 16000  # Hz, what every Whisper checkpoint expects
N_FFT = 400  # 25 ms STFT window
HOP_LENGTH = 160  # 10 ms: log-mel frames at 100 Hz
CHUNK_SECONDS = 30  # Whisper's fixed input window
WINDOW = 10  # Whisper frames per video frame (Hw in the paper)


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE) -> np.ndarray:
  """Any file librosa reads (wav, flac, mp3, ogg, ...; any channel count and rate) as ``[samples]`` float32.

  Channels are averaged to mono and the signal is resampled to ``sr``. Silence is valid; a missing,
  unreadable or empty file, or one holding NaN/inf samples, raises :class:`AudioError` naming the file.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise AudioError(f"{path}: no such file")
  if not os.path.isfile(path):
    raise AudioError(f"{path}: not a regular file")
  import librosa  # imported lazily: it is slow to import and only this function needs it
  import soundfile

  try:
    # soundfile first (wav, flac, ogg, mp3, ...): the raw samples can be checked before any resampling.
    data, native_sr = soundfile.read(path, dtype="float32", always_2d=True)  # [samples, channels]
    if data.size == 0:
      raise AudioError(f"{path}: the file holds no audio samples")
    wave = check_wave(data.mean(axis=1), what=path)  # a NaN in any channel reaches the mean
    if native_sr != sr:
      wave = librosa.resample(wave, orig_sr=native_sr, target_sr=sr)
  except AudioError:
    raise
  except Exception:  # formats libsndfile lacks (m4a, ...): librosa's audioread/ffmpeg path
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns on every audioread fallback
        wave, _ = librosa.load(path, sr=sr, mono=True, dtype=np.float32)
    except Exception as e:  # soundfile, audioread and ffmpeg each raise their own exception types
      if "not finite" in str(e):
        raise AudioError(f"{path}: the audio holds NaN or inf samples") from e
      raise AudioError(f"{path}: cannot read audio ({type(e).__name__}: {e})") from e
  wave = np.asarray(wave, np.float32)
  if wave.size == 0:
    raise AudioError(f"{path}: the file holds no audio samples")
  return check_wave(wave, what=path)


def check_wave(wave: np.ndarray, what: str = "waveform") -> np.ndarray:
  """A 1-D, non-empty, finite waveform as float32; raise :class:`AudioError` naming ``what`` otherwise."""
  wave = np.asarray(wave)
  if wave.ndim != 1:
    raise AudioError(f"{what}: expected a mono waveform [samples], got shape {wave.shape}")
  if wave.size == 0:
    raise AudioError(f"{what}: empty waveform")
  finite = np.isfinite(wave)
  if not finite.all():
    bad = int((~finite).sum())
    kind = "all samples are NaN" if np.isnan(wave).all() else f"{bad} of {wave.size} samples are NaN or inf"
    raise AudioError(f"{what}: {kind}")
  return wave.astype(np.float32, copy=False)


@functools.lru_cache(maxsize=8)
def mel_filters(n_mels: int = 80, sr: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
  """``[n_fft//2+1, n_mels]`` Slaney-scale, Slaney-normalised triangles over 0 … sr/2 (Whisper's filters)."""
  import librosa
  return np.ascontiguousarray(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, htk=False,
                                                  norm="slaney", dtype=np.float64).T)


def log_mel_spectrogram(wave: np.ndarray, n_mels: int = 80, *, num_samples: int | None = CHUNK_SECONDS * SAMPLE_RATE,
                        sr: int = SAMPLE_RATE, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH) -> np.ndarray:
  """Whisper's normalised log-mel spectrogram, ``[..., frames, n_mels]`` float32 (channels last).

  The values are those of ``transformers.WhisperFeatureExtractor`` (whose output is the transpose,
  ``[n_mels, frames]``): the waveform is zero-padded or truncated to ``num_samples`` (30 s; None keeps
  its length), framed by a centred STFT (reflect padding n_fft/2, periodic Hann window), the last
  frame dropped, power spectrum → mel → log10 (floor 1e-10), clamped at 8 decades below the
  window's maximum, then mapped by (x + 4) / 4. Computed in float64 numpy, so the only differences
  from the reference are its own float32 rounding. ``wave`` may be ``[samples]`` or ``[B, samples]``;
  the clamp uses each row's own maximum.
  """
  wave = np.asarray(wave, np.float64)
  if wave.ndim not in (1, 2):
    raise AudioError(f"log_mel_spectrogram: expected [samples] or [B, samples], got shape {wave.shape}")
  if num_samples is not None:
    n = wave.shape[-1]
    if n >= num_samples:
      wave = wave[..., :num_samples]
    else:
      wave = np.pad(wave, [(0, 0)] * (wave.ndim - 1) + [(0, num_samples - n)])
  if wave.shape[-1] <= n_fft // 2:
    raise AudioError(f"log_mel_spectrogram: {wave.shape[-1]} samples are too few for reflect padding "
                     f"of {n_fft // 2} (pass num_samples to zero-pad)")
  half = n_fft // 2
  padded = np.pad(wave, [(0, 0)] * (wave.ndim - 1) + [(half, half)], mode="reflect")
  num_frames = 1 + (padded.shape[-1] - n_fft) // hop_length
  frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop_length, :]
  frames = frames[..., :num_frames - 1, :]  # Whisper drops the last STFT frame: 30 s → 3000 frames
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
  power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # [..., frames, n_fft//2+1]
  log_spec = np.log10(np.maximum(power @ mel_filters(n_mels, sr, n_fft), 1e-10))  # [..., frames, n_mels]
  peak = log_spec.max(axis=(-2, -1), keepdims=True)
  log_spec = np.maximum(log_spec, peak - 8.0)
  return ((log_spec + 4.0) / 4.0).astype(np.float32)


def num_video_frames(num_samples: int, fps: int = 25, sr: int = SAMPLE_RATE) -> int:
  """F = floor(num_samples · fps / sr): the video frames whose time i/fps lies inside the audio.

  Integer arithmetic, so 4.84 s at 16 kHz (77440 samples) is exactly 121 frames at 25 fps.
  """
  if num_samples < 0:
    raise ValueError(f"num_video_frames: num_samples must be ≥ 0, got {num_samples}")
  return int(num_samples) * int(fps) // int(sr)


def num_whisper_frames(num_samples: int, hop_length: int = HOP_LENGTH) -> int:
  """Whisper frames (50 Hz) covering ``num_samples``: ceil(samples / (2·hop)); frame j is centred on sample 2·hop·j."""
  return -(-int(num_samples) // (2 * hop_length))


def window_indices(num_frames: int, num_whisper: int, window: int = WINDOW, stride: int = 2) -> np.ndarray:
  """``[F, window]`` Whisper-frame indices: row i is stride·i − (window//2 − 1) … stride·i + window//2, clamped.

  With the defaults (window 10, stride 2: 50 Hz Whisper, 25 fps video) row i is 2i−4 … 2i+5, so
  position 4 holds Whisper frame 2i, the one centred on the video frame's time i/25 s.
  """
  if num_whisper < 1:
    raise ValueError(f"window_indices: need at least one Whisper frame, got {num_whisper}")
  if num_frames < 0:
    raise ValueError(f"window_indices: num_frames must be ≥ 0, got {num_frames}")
  offsets = np.arange(window) - (window // 2 - 1)  # [-4 … 5]
  return np.clip(stride * np.arange(num_frames)[:, None] + offsets[None, :], 0, num_whisper - 1)


def frame_windows(hidden, num_frames: int, window: int = WINDOW):
  """Per-video-frame speech windows ``[F, window, D]`` from Whisper states ``hidden`` ``[T_w, D]`` (50 Hz).

  Works on numpy or jax arrays (a static gather, jit-friendly); any F ≥ 0, indices clamped at both ends.
  """
  idx = window_indices(num_frames, hidden.shape[0], window)
  return hidden[idx]  # [F, window, D]
