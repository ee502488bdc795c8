"""Audio front end (docs/design.md §3.2).

Files → 16 kHz mono float32 → Whisper log-mel → per-video-frame windows.

Time grids, all anchored at t = 0:
  * samples at 16 kHz;
  * log-mel frames at 100 Hz (hop 160): frame m is the STFT window centred on sample 160·m;
  * Whisper frames at 50 Hz (the encoder's stride-2 conv): frame j is centred on mel frame 2j, time j/50 s;
  * video frames at 25 fps: frame i (time i/25 s) is centred on Whisper frame 2i, and its speech
    window is Whisper frames 2i−4 … 2i+5, clamped at the ends (S ∈ R^{F×10×384} in the paper).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
import tempfile
import warnings
from typing import NamedTuple

import imageio_ffmpeg
import numpy as np
import soundfile
import soxr

from read_jax.constants import HOP_LENGTH, SAMPLE_RATE  # 16 kHz; log-mel frames at 100 Hz
from read_jax.errors import AudioError  # re-exported: read_jax.audio.AudioError

N_FFT = 400  # 25 ms STFT window
CHUNK_SECONDS = 30  # Whisper's fixed input window
WINDOW = 10  # Whisper frames per video frame (Hw in the paper)
BLOCK_FRAMES = 1 << 18  # input frames decoded, downmixed and resampled at a time (≤ 8 MB for 8 channels)
MAX_PREALLOCATED = 1 << 28  # samples reserved up front from a header's length (4.7 h at 16 kHz; pages are
                            # only resident once written, so a lying header costs address space, not memory)
# ffmpeg demuxers of self-contained audio and video files, for files from strangers (load_audio(containers=...)):
# none of them opens another file or URL, unlike playlists (hls), concat lists, image sequences or subtitles.
PLAIN_CONTAINERS = ("wav", "w64", "aiff", "caf", "flac", "mp3", "ogg", "aac", "matroska", "mov")


class AudioInfo(NamedTuple):
  """What a file's header says about its (first) audio stream."""
  seconds: float | None  # None when the container does not say
  sample_rate: int
  codec: str


def audio_info(path: str | os.PathLike) -> AudioInfo:
  """The first audio stream of a file from its header, without decoding it.

  Raises :class:`AudioError` naming the file when it is missing, empty, not a media file, or holds no
  audio stream (a video without sound).
  """
  path = _regular_file(path)
  try:
    info = soundfile.info(path)
  except Exception:  # not a format libsndfile reads (mp4, m4a, webm, ...): ask ffmpeg
    return _ffmpeg_info(path)
  if info.frames == 0:
    raise AudioError(f"{path}: the file holds no audio samples")
  return AudioInfo(info.frames / info.samplerate, info.samplerate, info.subtype)


def check_audio_file(path: str | os.PathLike, min_seconds: float = 1 / 25) -> AudioInfo:
  """:func:`audio_info`, plus: at least ``min_seconds`` long (default one video frame at 25 fps), and
  for float PCM files (the only kind that can hold them) no NaN/inf samples.

  Cheap (the header, and a raw read of float PCM): meant to reject a bad file before a model loads.
  """
  info = audio_info(path)
  if info.seconds is not None and info.seconds < min_seconds:
    raise AudioError(f"{path}: {info.seconds:.3f} s of audio is shorter than one video frame "
                     f"({min_seconds:.3f} s)")
  if info.codec in ("FLOAT", "DOUBLE"):
    count = _NonFinite()
    try:
      with soundfile.SoundFile(path) as f:
        for block in f.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True):
          count.add(block.mean(axis=1))
    except Exception as e:  # libsndfile's own errors: a truncated or corrupt file
      raise AudioError(f"{path}: cannot read audio ({type(e).__name__}: {e})") from None
    count.check(path)
  return info


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE, *, containers: tuple[str, ...] | None = None,
               max_seconds: float | None = None) -> np.ndarray:
  """Any audio file, or the first audio track of a video file, as ``[samples]`` float32 at ``sr``.

  WAV, FLAC, OGG, MP3 (what libsndfile reads) are read directly; anything else (m4a, mp4, webm, mkv,
  ...) is decoded by the ffmpeg binary imageio-ffmpeg ships. Channels are averaged to mono and the
  signal is resampled to ``sr`` (soxr, as librosa's default) block by block, so memory stays near the
  size of the result whatever the input's rate and channel count (an hour of 44.1 kHz stereo: the
  230 MB of 16 kHz float32 it becomes, not the 1.3 GB of the decoded input). Silence is valid; a
  missing, unreadable or empty file, one without an audio stream, or one holding NaN/inf samples
  raises :class:`AudioError` naming the file.

  For a file from someone else (an upload): ``containers`` limits ffmpeg to those demuxers (e.g.
  :data:`PLAIN_CONTAINERS`) and to the ``file`` protocol, since a playlist or concat list would make it read
  other files; ``max_seconds`` stops decoding with an AudioError once the audio is longer (a small compressed
  file can hold hours, and a header can lie about its length).
  """
  path = _regular_file(path)
  try:
    with soundfile.SoundFile(path) as f:
      blocks = f.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True)  # [n, channels] each
      wave = _mono_resampled(blocks, f.samplerate, sr, f.frames, path, max_seconds)
  except AudioError:
    raise
  except Exception:  # a format libsndfile lacks, or one it fails on part way: ffmpeg decodes it
    wave = _ffmpeg_decode(path, sr, containers, max_seconds)
  if wave.size == 0:
    raise AudioError(f"{path}: the file holds no audio samples")
  return wave


def _regular_file(path) -> str:
  path = os.fspath(path)
  if not os.path.exists(path):
    raise AudioError(f"{path}: no such file")
  if not os.path.isfile(path):
    raise AudioError(f"{path}: not a regular file")
  if os.path.getsize(path) == 0:
    raise AudioError(f"{path}: the file is empty")
  return path


class _NonFinite:
  """Counts NaN/inf samples over blocks, for one message about the whole file."""

  def __init__(self):
    self.total = self.bad = self.nan = 0

  def add(self, x: np.ndarray) -> bool:
    """Count block ``x``; True while every sample so far is finite."""
    finite = np.isfinite(x)
    self.total += x.size
    if not finite.all():
      self.bad += int(x.size - finite.sum())
      self.nan += int(np.isnan(x).sum())
    return self.bad == 0

  def check(self, what: str) -> None:
    if self.bad:
      kind = ("all samples are NaN" if self.nan == self.total else
              f"{self.bad} of {self.total} samples are NaN or inf")
      raise AudioError(f"{what}: {kind}")


class _Samples:
  """A float32 buffer filled block by block: preallocated to the expected length, grown if it is exceeded."""

  def __init__(self, expected: int):
    self.data = np.empty(max(int(expected), 0), np.float32)
    self.size = 0

  def append(self, x: np.ndarray) -> None:
    end = self.size + x.shape[0]
    if end > self.data.shape[0]:
      grown = np.empty(max(end, self.data.shape[0] * 3 // 2 + BLOCK_FRAMES), np.float32)
      grown[:self.size] = self.data[:self.size]
      self.data = grown
    self.data[self.size:end] = x
    self.size = end

  def result(self, length: int | None = None) -> np.ndarray:
    """The samples, cut or zero-padded to ``length`` when given."""
    if length is not None and length > self.size:
      self.append(np.zeros(length - self.size, np.float32))
    return self.data[:self.size if length is None else length]


def _mono_resampled(blocks, native_sr: int, sr: int, num_frames: int | None, what: str,
                    max_seconds: float | None = None) -> np.ndarray:
  """Blocks ``[n, channels]`` at ``native_sr`` → mono ``[samples]`` at ``sr``: each block's channel mean,
  streamed through soxr (the same samples as librosa's one-shot ``resample``, length ceil(n · sr / native));
  an AudioError as soon as the input passes ``max_seconds``."""
  resampler = None if native_sr == sr else soxr.ResampleStream(native_sr, sr, 1, dtype="float32", quality="HQ")
  expected = -(-(num_frames or 0) * sr // native_sr)
  out = _Samples(min(expected, MAX_PREALLOCATED))  # a header's length is a hint: the buffer grows past it
  count = _NonFinite()
  for block in blocks:
    mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]  # a NaN in any channel reaches the mean
    if max_seconds is not None and count.total + mono.shape[0] > max_seconds * native_sr:
      raise AudioError(f"{what}: the audio is longer than the {max_seconds:g} s limit")
    if count.add(mono):  # after a bad sample only count the rest, for the message
      out.append(mono if resampler is None else resampler.resample_chunk(mono))
  count.check(what)
  if resampler is None:
    return out.result()
  out.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
  return out.result(-(-count.total * sr // native_sr))  # librosa's length (its fix_length)


def ffmpeg_exe() -> str:
  """The ffmpeg binary imageio-ffmpeg ships (no system ffmpeg or ffprobe is assumed)."""
  return imageio_ffmpeg.get_ffmpeg_exe()


@contextlib.contextmanager
def quiet_fork():
  """Silence JAX's "os.fork() was called" warning around starting a subprocess that execs at once (none
  of the parent's threads or locks are used in the child)."""
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="os.fork\\(\\) was called", category=RuntimeWarning)
    yield


def ffmpeg_streams(path: str, containers: tuple[str, ...] | None = None) -> str:
  """ffmpeg's description of a file's container and streams (its stderr for ``ffmpeg -i path``); ``containers``
  as in :func:`load_audio`."""
  with quiet_fork():
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *_input_whitelist(containers), "-i", path],
                          capture_output=True, text=True, errors="replace").stderr


def _input_whitelist(containers: tuple[str, ...] | None) -> list[str]:
  """ffmpeg input options: only these demuxers, only local files (nothing when ``containers`` is None)."""
  if containers is None:
    return []
  return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(containers)]


def _ffmpeg_info(path: str, containers: tuple[str, ...] | None = None) -> AudioInfo:
  info = ffmpeg_streams(path, containers)
  if "not on whitelist" in info:
    raise AudioError(f"{path}: not a plain audio or video file (accepted containers: {', '.join(containers)})")
  if "Stream #" not in info:
    lines = [line for line in info.strip().splitlines() if line.strip()]
    raise AudioError(f"{path}: cannot read audio (not a media file ffmpeg knows: {lines[-1] if lines else '?'})")
  stream = re.search(r"Stream #\S+.*?: Audio: (\w+).*?(\d+) Hz", info)
  if stream is None:
    kinds = sorted(set(re.findall(r"Stream #\S+.*?: (\w+):", info)))
    raise AudioError(f"{path}: no audio stream (the file holds {' and '.join(kinds).lower() or 'no'} streams only)")
  duration = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", info)
  seconds = None
  if duration:
    h, m, s = duration.groups()
    seconds = 3600 * int(h) + 60 * int(m) + float(s)
  return AudioInfo(seconds, int(stream.group(2)), stream.group(1))


def _read_exact(pipe, n: int) -> bytes:
  data = pipe.read(n)
  if len(data) != n:
    raise EOFError
  return data


def _wav_header(pipe) -> tuple[int, int]:
  """(channels, sample rate) from the RIFF header ffmpeg streams, leaving ``pipe`` at the samples."""
  if _read_exact(pipe, 12)[8:] != b"WAVE":
    raise EOFError
  channels = rate = None
  while True:
    chunk, size = _read_exact(pipe, 4), int.from_bytes(_read_exact(pipe, 4), "little")
    if chunk == b"data":
      if channels is None:
        raise EOFError
      return channels, rate
    body = _read_exact(pipe, size + (size & 1))
    if chunk == b"fmt ":
      channels, rate = int.from_bytes(body[2:4], "little"), int.from_bytes(body[4:8], "little")


def _ffmpeg_decode(path: str, sr: int, containers: tuple[str, ...] | None = None,
                   max_seconds: float | None = None) -> np.ndarray:
  """The first audio stream decoded by ffmpeg to float32 at its own rate and channels (streamed as WAV
  through a pipe), then downmixed and resampled here exactly like a file soundfile reads."""
  info = _ffmpeg_info(path, containers)  # a clear error for no audio stream; the duration sizes the buffer
  cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", *_input_whitelist(containers), "-i", path, "-map", "0:a:0",
         "-vn", "-sn", "-dn", "-c:a", "pcm_f32le", "-f", "wav", "-bitexact", "pipe:1"]
  with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty ffmpeg can never block on it
    with quiet_fork():
      proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
    try:
      try:
        channels, native_sr = _wav_header(proc.stdout)
      except EOFError:
        channels, native_sr = None, None
      wave = None
      if channels:
        frames = int(info.seconds * native_sr) if info.seconds else None
        wave = _mono_resampled(_pcm_blocks(proc.stdout, channels), native_sr, sr, frames, path, max_seconds)
      returncode = proc.wait()
    finally:  # an interrupt or a bad sample: stop ffmpeg rather than wait for it
      if proc.poll() is None:
        proc.kill()
        proc.wait()
      proc.stdout.close()
    log.seek(0)
    err = log.read().decode(errors="replace").strip()
  if returncode != 0 or wave is None:
    lines = err.splitlines()
    raise AudioError(f"{path}: cannot read audio (ffmpeg: {lines[-1] if lines else f'exit code {returncode}'})")
  return wave


def _pcm_blocks(pipe, channels: int):
  """float32 ``[n, channels]`` blocks from interleaved little-endian samples on ``pipe``."""
  frame_bytes = 4 * channels
  rest = b""
  while True:
    data = pipe.read(BLOCK_FRAMES * frame_bytes)
    if not data:
      return
    data = rest + data
    usable = len(data) - len(data) % frame_bytes
    rest = data[usable:]
    if usable:
      yield np.frombuffer(data[:usable], "<f4").reshape(-1, channels)


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
