"""Speech features (docs/design.md §3.2): a frozen speech encoder over audio of any length, cut per video frame.

  encode_long(wave, encoder)               the encoder's states at 50 Hz, ``[ceil(samples / 320), D]``
  speech_features(wave, encoder)           S ``[F, 10, D]``: video frame i sees states 2i−4 … 2i+5
  LiveSpeechFeatures(encoder)              the same rows as ``policy="live"``, fed the audio as it arrives

The encoder is a :class:`SpeechEncoder`: audio windows in, states on the 50 Hz grid out (two per video frame at
25 fps), its width D and its longest window. The paper's is Whisper's encoder (:class:`WhisperSpeechEncoder`);
another is a module in ``read_jax/models/``, a converter, and one line in ``read_jax.convert.speech_encoders``.

Two window policies decide which audio the encoder sees for a frame's states:

  * "whole" (the default, what the models were trained on): the audio is cut into the encoder's fixed
    windows (30 s) at 0, 30, 60 s, ...; a frame's features depend on its whole window, so a live
    stream can only reproduce them up to 30 s late.
  * "live" (:class:`WindowPolicy`): one short window per latent frame (8 video frames, 0.32 s; latent
    frame 0 is video frame 0 alone) that ends a fixed look-ahead A after the latent frame's last video
    frame, with past audio before it (zeros before the stream's start). A latent frame's features
    are final once its audio and A more have arrived, whatever comes later.

Why A = 140 ms: video frame i (time 640·i samples) takes Whisper states up to 2i + 5, centred 100 ms
later. State j reaches mel frames 2j − 2 … 2j + 2 through conv2 (k3, stride 2) ∘ conv1 (k3), and mel
frame m the STFT samples 160·m − 200 … 160·m + 199, so state 2i + 5 has its whole receptive field in
real audio once sample 640·i + 2119 has arrived (132.5 ms). Windows start and end on the 20 ms state
grid (so their states lie on the stream's 50 Hz grid, not between its states): 2120 rounds up to 2240
samples, 140 ms. Everything a frame takes is then computed from real audio by the convolutions; only attention
sees the window's end (and its start).

Why W = 4 s ("live"): updated every 0.32 s, tiny.en (our Flax encoder, 2 loaded CPU cores) costs ≈ 0.10,
0.18–0.20 and 0.29 s of CPU per second of audio for W = 2, 4, 6 s ("whole": 0.027). Live features are
another feature, not an approximation of "whole": Whisper's states depend on their position in the
window, so on espeak-ng speech live (W = 4 s) vs whole agree at a per-frame cosine of ≈ 0.50 (English
and French), while "whole" itself, with its 30 s cut points moved by 15 s, agrees with itself at 0.55–0.58.
A model trained on "whole" features must be retrained on "live" ones.

The signal processing (log-mel, time grids, windows) is ``read_jax.audio``; the network is
``read_jax.models.whisper``.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from read_jax import audio
from read_jax.errors import ConfigError
from read_jax.constants import FRAMES_PER_LATENT
from read_jax.models.whisper import WhisperEncoder, encode
from read_jax.constants import FPS, SAMPLE_RATE, STATE_SAMPLES

FRAME_SAMPLES = SAMPLE_RATE // FPS  # 640: one video frame
# Samples past state j's centre (320·j) its receptive field reaches: 2 mel frames (conv1 ∘ conv2) + half the STFT.
STATE_REACH = 2 * audio.HOP_LENGTH + audio.N_FFT // 2  # 520
# From video frame i's time (state 2i) to the end of its last state's (2i + 5) receptive field, rounded up to
# the state grid: 5·320 + 520 = 2120 → 2240 samples, 140 ms.
MIN_LOOKAHEAD_SAMPLES = -(-(audio.WINDOW // 2 * STATE_SAMPLES + STATE_REACH) // STATE_SAMPLES) * STATE_SAMPLES
MIN_LOOKAHEAD_MS = 1000 * MIN_LOOKAHEAD_SAMPLES // audio.SAMPLE_RATE  # 140
DEFAULT_LIVE_SECONDS = 4.0  # W of "live": ≈ 0.18–0.20 s CPU per audio second with tiny.en on 2 cores (budget 0.3)


@dataclasses.dataclass(frozen=True)
class WindowPolicy:
  """The "live" policy: per latent frame, one encoder window of W s ending A ms after its last video frame.

  Latent frame k covers video frames 8k − 7 … 8k (k = 0: frame 0 alone); its window is the stream's
  samples 5120·k + A − 16000·W … 5120·k + A (zeros outside the stream), turned into log-mel like one
  Whisper input of that length (clamped at its own peak − 8) and encoded with the first 50·W
  positional embeddings. Each frame takes its 10 states 2i − 4 … 2i + 5 (clamped to the stream's
  states, as "whole") from its latent frame's window.
  """

  window_seconds: float = DEFAULT_LIVE_SECONDS  # W: audio per encoder window, a multiple of 20 ms
  lookahead_ms: int = MIN_LOOKAHEAD_MS  # A: audio after the latent frame's last video frame, a multiple of 20 ms

  def __post_init__(self):
    states = self.window_seconds * audio.SAMPLE_RATE / STATE_SAMPLES
    if not math.isclose(states, round(states)) or round(states) < 1:
      raise ConfigError(f"speech window: {self.window_seconds} s is not a positive multiple of 20 ms "
                        f"(one Whisper state)")
    if self.lookahead_ms * audio.SAMPLE_RATE % (1000 * STATE_SAMPLES) or self.lookahead_ms < MIN_LOOKAHEAD_MS:
      raise ConfigError(f"speech window: look-ahead {self.lookahead_ms} ms must be a multiple of 20 ms and ≥ "
                        f"{MIN_LOOKAHEAD_MS} ms (a frame's last Whisper state and its receptive field)")
    if self.window_states < self.min_window_states:
      raise ConfigError(f"speech window: {self.window_seconds} s is shorter than the "
                        f"{self.min_window_states * STATE_SAMPLES / audio.SAMPLE_RATE} s a latent frame's "
                        f"8 video frames take with a {self.lookahead_ms} ms look-ahead")

  @property
  def window_states(self) -> int:
    """P': Whisper states per window."""
    return round(self.window_seconds * audio.SAMPLE_RATE / STATE_SAMPLES)

  @property
  def window_samples(self) -> int:
    return self.window_states * STATE_SAMPLES

  @property
  def lookahead_samples(self) -> int:
    return self.lookahead_ms * audio.SAMPLE_RATE // 1000

  @property
  def min_window_states(self) -> int:
    """From the first state of the latent frame's first video frame (2(8k − 7) − 4) to the window's end."""
    return 2 * (FRAMES_PER_LATENT - 1) + (audio.WINDOW // 2 - 1) + self.lookahead_samples // STATE_SAMPLES

  def window_end(self, k):
    """Sample (exclusive) where latent frame ``k``'s window ends: its last video frame 8k, plus A."""
    return FRAME_SAMPLES * FRAMES_PER_LATENT * np.asarray(k) + self.lookahead_samples

  def check(self, encoder: "SpeechEncoder") -> None:
    """A ConfigError if ``encoder`` cannot take this policy's windows (its longest window is shorter)."""
    if self.window_samples > encoder.window_samples:
      raise ConfigError(f"speech window: {self.window_seconds} s is longer than the encoder's "
                        f"{encoder.window_samples / SAMPLE_RATE:g} s window (a shorter one: live:<seconds>)")


class SpeechEncoder:
  """What the speech features need of an encoder (a protocol; :class:`WhisperSpeechEncoder` is the paper's).

  ``encode(windows)``: audio windows [B, n] (16 kHz, n a multiple of ``STATE_SAMPLES`` and at most
  ``window_samples``) → their states [B, n / 320, width] on the 50 Hz grid, state j of a window centred on its
  sample 320·j; each window is encoded on its own (its start is the encoder's start). ``kind`` names its entry in
  ``read_jax.convert.speech_encoders`` (how it is loaded and saved).
  """

  kind: str  # registry key
  width: int  # D: the width of every state (Whisper tiny: 384)
  window_samples: int  # the longest window one call encodes (Whisper: its 30 s input)
  dtype: jnp.dtype  # the states' dtype

  def encode(self, windows) -> jnp.ndarray:
    raise NotImplementedError

  def encode_tail(self, windows, tail: int) -> jnp.ndarray:
    """The last ``tail`` states of each window's ``encode`` ``[B, tail, width]`` (an encoder may compute only them)."""
    return self.encode(windows)[:, -tail:]

  def on_device(self, device) -> "SpeechEncoder":
    """A copy whose weights live on ``device``."""
    raise NotImplementedError


@dataclasses.dataclass(frozen=True, eq=False)
class WhisperSpeechEncoder(SpeechEncoder):
  """Whisper's encoder as the speech encoder (docs/design.md §3.2): each window turned into log-mel exactly as
  transformers does one input of that length, then encoded with the first n / 320 positional embeddings."""

  module: WhisperEncoder
  params: dict
  kind = "whisper"

  @property
  def width(self) -> int:
    return self.module.d_model

  @property
  def window_samples(self) -> int:
    return self.module.max_source_positions * STATE_SAMPLES

  @property
  def dtype(self):
    return self.module.dtype

  def encode(self, windows) -> jnp.ndarray:
    return self._encode(windows, None)  # [B, P', D]

  def encode_tail(self, windows, tail: int) -> jnp.ndarray:
    return self._encode(windows, tail)  # [B, tail, D]: the last layer computes only those positions

  def _encode(self, windows, tail: int | None) -> jnp.ndarray:
    windows = np.asarray(windows, np.float32)
    states = windows.shape[1] // STATE_SAMPLES
    module = self.module.clone(window_positions=None if states == self.module.max_source_positions else states,
                               output_tail=tail)
    mel = audio.log_mel_spectrogram(windows, module.num_mel_bins, num_samples=windows.shape[1])  # [B, 2P', n_mels]
    return encode(module, self.params, mel)

  def on_device(self, device) -> "WhisperSpeechEncoder":
    return dataclasses.replace(self, params=jax.device_put(self.params, device))


def window_policy(spec) -> WindowPolicy | None:
  """``"whole"`` → None; ``"live"`` → ``WindowPolicy()``; ``"live:W"`` → W-second windows; a WindowPolicy as is.

  The string form is ``PipelineConfig.speech_window``'s (pipeline.json).
  """
  if spec is None or isinstance(spec, WindowPolicy):
    return spec
  if spec == "whole":
    return None
  if isinstance(spec, str) and (spec == "live" or spec.startswith("live:")):
    if spec == "live":
      return WindowPolicy()
    try:
      seconds = float(spec[len("live:"):])
    except ValueError:
      seconds = None
    if seconds is None or not math.isfinite(seconds):
      raise ConfigError(f"speech window {spec!r}: expected live:<seconds>, e.g. live:2")
    return WindowPolicy(seconds)
  raise ConfigError(f"speech window {spec!r}: expected 'whole', 'live' or 'live:<seconds>'")


def encode_long(wave, encoder: SpeechEncoder, batch_size: int = 1):
  """The encoder's states at 50 Hz for a waveform of any length: ``[ceil(samples / 320), D]``.

  The waveform is cut into the encoder's longest windows (30 s for Whisper), the last one zero-padded, encoded
  ``batch_size`` windows at a time by one compiled function (the last batch padded with silent windows, so the
  shape never changes), and the outputs concatenated and trimmed to the real length. Host memory stays bounded
  by one batch of windows whatever the length.
  """
  if batch_size < 1:
    raise ValueError(f"encode_long: batch_size must be ≥ 1, got {batch_size}")
  wave = audio.check_wave(wave, "encode_long")
  n = encoder.window_samples
  num_samples = wave.shape[0]
  num_windows = -(-num_samples // n)
  num_batches = -(-num_windows // batch_size)
  windows = np.pad(wave, (0, num_batches * batch_size * n - num_samples)).reshape(num_batches, batch_size, n)
  outputs = []
  for batch in windows:  # [batch_size, n]
    outputs.append(encoder.encode(batch).reshape(-1, encoder.width))  # [batch_size·P, D]
  return jnp.concatenate(outputs)[:audio.num_whisper_frames(num_samples)]  # [T_w, D]


def speech_features(wave, encoder: SpeechEncoder, fps: int = FPS, num_frames: int | None = None,
                    batch_size: int = 1, policy="whole"):
  """S ``[F, 10, D]``: for video frame i, the encoder's states 2i−4 … 2i+5 (clamped), docs/design.md §3.2.

  ``wave``: 16 kHz mono ``[samples]``. ``num_frames`` defaults to F = floor(samples · fps / 16000)
  (:func:`read_jax.audio.num_video_frames`: the frames whose time i/fps lies inside the audio); a
  larger F is allowed, its windows clamp to the last Whisper frame. The 50 Hz grid gives exactly
  two Whisper frames per video frame only at 25 fps, so other rates are refused. ``policy``: which
  windows the encoder sees (module docstring): "whole" (default), "live", "live:W" or a
  :class:`WindowPolicy`; ``batch_size`` windows are encoded per call in either.
  """
  if fps != FPS:
    raise ValueError(f"speech_features: fps must be 25 (the speech encoder's 50 Hz = 2 states per video frame), got {fps}")
  live = window_policy(policy)
  if live is not None:
    return _live_features(wave, encoder, live, num_frames, batch_size)
  hidden = encode_long(wave, encoder, batch_size)  # [T_w, D]
  if num_frames is None:
    num_frames = audio.num_video_frames(np.shape(wave)[0], fps)
  return audio.frame_windows(hidden, num_frames)  # [F, 10, D]


def latent_of_frame(frames):
  """Latent frame of each video frame: 0 for frame 0, k for frames 8k − 7 … 8k."""
  return -(-np.asarray(frames) // FRAMES_PER_LATENT)


def latent_frames(k: int, num_frames: int) -> np.ndarray:
  """The video frames of latent frame ``k`` (0: frame 0; k: 8k − 7 … 8k) below ``num_frames``."""
  first = 0 if k == 0 else FRAMES_PER_LATENT * (k - 1) + 1
  return np.arange(first, min(FRAMES_PER_LATENT * k + 1, num_frames))


def _window(wave: np.ndarray, stop: int, length: int) -> np.ndarray:
  """``wave[stop − length : stop]``, zeros where that lies outside the waveform."""
  out = np.zeros(length, np.float32)
  start = stop - length
  lo, hi = max(start, 0), min(stop, wave.shape[0])
  if hi > lo:
    out[lo - start:hi - start] = wave[lo:hi]
  return out


def _tail_states(policy: WindowPolicy, k, frames: np.ndarray, num_whisper: int) -> int:
  """States at the end of latent frame ``k``'s window that its ``frames`` read: ``policy.min_window_states``, or
  more for frames past the stream's end (their states clamp to its last one, earlier in the window)."""
  first = int(audio.window_indices(int(frames[-1]) + 1, num_whisper)[frames].min())
  return int(min(policy.window_states, max(policy.min_window_states,
                                           policy.window_end(k) // STATE_SAMPLES - first)))


def _rows(states, policy: WindowPolicy, k, frames: np.ndarray, num_whisper: int):
  """Features ``[n, 10, D]`` of video frames ``frames`` (all of latent frame ``k``) from the last states of its
  window (``SpeechEncoder.encode_tail``: at least :func:`_tail_states` of them)."""
  first_state = policy.window_end(k) // STATE_SAMPLES - states.shape[0]  # stream index of states[0]
  idx = audio.window_indices(int(frames[-1]) + 1, num_whisper)[frames] - first_state  # [n, 10] in 0 … tail − 1
  assert idx.min() >= 0, f"latent frame {k}: reads a state before its window's last {states.shape[0]}"
  return states[idx]


def _live_features(wave, encoder: SpeechEncoder, policy: WindowPolicy, num_frames: int | None, batch_size: int):
  """``speech_features`` under a :class:`WindowPolicy`: one window per latent frame, ``batch_size`` per call."""
  if batch_size < 1:
    raise ValueError(f"speech_features: batch_size must be ≥ 1, got {batch_size}")
  wave = audio.check_wave(wave, "speech_features")
  if num_frames is None:
    num_frames = audio.num_video_frames(wave.shape[0], FPS)
  policy.check(encoder)
  num_whisper = audio.num_whisper_frames(wave.shape[0])
  if num_frames < 1:
    return jnp.zeros((0, audio.WINDOW, encoder.width), encoder.dtype)
  num_blocks = int(latent_of_frame(num_frames - 1)) + 1
  n = policy.window_samples
  outputs = []
  for k0 in range(0, num_blocks, batch_size):
    ks = np.arange(k0, k0 + batch_size)  # the last batch padded with windows past the end: one compiled shape
    windows = np.stack([_window(wave, int(policy.window_end(k)), n) for k in ks])  # [batch_size, n]
    real = ks[ks < num_blocks]
    tail = max(_tail_states(policy, k, latent_frames(k, num_frames), num_whisper) for k in real)
    states = encoder.encode_tail(windows, tail)  # [batch_size, tail, D]
    for b, k in enumerate(real):
      outputs.append(_rows(states[b], policy, k, latent_frames(k, num_frames), num_whisper))
  return jnp.concatenate(outputs)  # [F, 10, D]


class LiveSpeechFeatures:
  """Speech features of a stream fed as it arrives, equal to ``speech_features(..., policy=policy)`` of the
  whole stream: ``feed(pcm)`` returns the rows of the video frames whose latent frame's window is complete
  (its audio plus the look-ahead), ``finish()`` the rest (the window zero-padded past the stream's end).

    live = LiveSpeechFeatures(encoder)
    for pcm in chunks:                 # 16 kHz float32, any chunk sizes
      rows = live.feed(pcm)            # [n, 10, D]: frames 0, then 1 … 8, 9 … 16, ... as they become final
    rows = live.finish()               # frames up to F − 1, F = floor(25 · samples / 16000)

  Only the last window's samples are kept. Rows are numpy float32, one encoder call per latent frame.
  """

  def __init__(self, encoder: SpeechEncoder, policy="live"):
    self.policy = window_policy(policy)
    if self.policy is None:
      raise ConfigError("LiveSpeechFeatures: the 'whole' policy needs the whole window before any frame; "
                        "use 'live' or a WindowPolicy")
    self.policy.check(encoder)
    self.encoder = encoder
    self.num_samples = 0  # samples fed so far
    self.frames = 0  # rows returned so far
    self._buffer = np.zeros(0, np.float32)  # the stream's samples from _buffer_start on
    self._buffer_start = 0
    self._next = 0  # the next latent frame to compute
    self._finished = False

  def copy(self, encoder: SpeechEncoder | None = None) -> "LiveSpeechFeatures":
    """An independent stream in this one's state (fed the same samples so far), on ``encoder`` if given (the same
    encoder's weights on another device)."""
    other = copy.copy(self)
    other.encoder = self.encoder if encoder is None else encoder
    other._buffer = self._buffer.copy()
    return other

  def feed(self, pcm) -> np.ndarray:
    """Append 16 kHz mono samples; return the rows ``[n, 10, D]`` (n ≥ 0) that became final."""
    if self._finished:
      raise ValueError("LiveSpeechFeatures: feed after finish")
    pcm = np.asarray(pcm, np.float32)
    if pcm.size:
      pcm = audio.check_wave(pcm, "LiveSpeechFeatures.feed")
      self._buffer = np.concatenate([self._buffer, pcm])
      self.num_samples += pcm.shape[0]
    rows = []
    while self.policy.window_end(self._next) <= self.num_samples:
      # No frame computed here reaches the stream's last state, so the clamp at the end never applies.
      rows.append(self._block(self._next, latent_frames(self._next, FRAMES_PER_LATENT * self._next + 1),
                              audio.num_whisper_frames(self.num_samples)))
      self._next += 1
    keep = max(int(self.policy.window_end(self._next)) - self.policy.window_samples - self._buffer_start, 0)
    self._buffer, self._buffer_start = self._buffer[keep:], self._buffer_start + keep
    return self._concat(rows)

  def finish(self) -> np.ndarray:
    """The rows of the remaining frames up to F − 1 (F = floor(25 · samples / 16000)); the stream ends."""
    self._finished = True
    num_frames = audio.num_video_frames(self.num_samples, FPS)
    rows = []
    while self.frames < num_frames:
      rows.append(self._block(self._next, latent_frames(self._next, num_frames),
                              audio.num_whisper_frames(self.num_samples)))
      self._next += 1
    return self._concat(rows)

  def _block(self, k: int, frames: np.ndarray, num_whisper: int) -> np.ndarray:
    stop = int(self.policy.window_end(k)) - self._buffer_start
    window = _window(self._buffer, stop, self.policy.window_samples)  # zeros before the stream and past its end
    tail = _tail_states(self.policy, k, frames, num_whisper)
    states = np.asarray(self.encoder.encode_tail(window[None], tail))[0]  # [tail, D], on the host
    self.frames += frames.shape[0]
    return np.asarray(_rows(states, self.policy, k, frames, num_whisper), np.float32)

  def _concat(self, rows) -> np.ndarray:
    if rows:
      return np.concatenate(rows)
    return np.zeros((0, audio.WINDOW, self.encoder.width), np.float32)
