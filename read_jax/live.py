"""Online generation: a session fed 16 kHz PCM as it arrives, handing out frames as soon as they are final.

  session = LiveSession(pipe, "face.png", policy="live")   # per-session state only
  for pcm in microphone:                                   # any chunk size, int16 or float32 in [-1, 1]
    session.feed(pcm)
    for block in session.frames():                         # FrameBlock(index, first_frame, frames, times)
      show(block.frames, block.times)
  for block in session.finish():                           # the end padded with silence, the rest flushed
    show(block.frames, block.times)

Clip mode (DESIGN §3.9, issue #22): clip j of f latent frames covers latent frames j(f−1) … j(f−1) + f − 1
and runs once the speech latents of all of them are final, i.e. once the audio of its last video frame plus
the speech window's look-ahead (140 ms) has arrived. Everything a clip needs is then exactly what the offline
streaming order (:meth:`ReadPipeline.stream` with ``PipelineConfig.speech_window`` set to the same live policy)
gives it, so the session's frames equal the offline ones (up to float rounding of different array shapes):

  * speech features: :class:`read_jax.speech.LiveSpeechFeatures`, equal to the offline live-policy features;
  * speech latents: the SpeechAE encoder is causal with a bounded history (:func:`history_groups`), so latent k
    is re-encoded from a fixed-size window of the last frames (one compiled shape) instead of the whole S;
  * the ANS sampler: the same jitted ``sampling.run_clip`` with the session's own ``ClipCarry``, clip j's noise
    from ``fold_in(key, j)``, its decode key ``fold_in(key, 1_000_000 + j)``, as the offline path.

``finish()`` pads the stream with silence to whole clips exactly as :meth:`ReadPipeline.speech_features` does and
trims the video to F = floor(25 · seconds) frames. Silence fed in the middle is just audio: frames keep coming.

Rolling mode (``mode="rolling"``, :mod:`read_jax.ans.rolling`): the window advances as soon as one latent frame's
speech latent is final, so each block is one latent frame (8 video frames) and comes out ``noisy − 1`` latent
frames after its audio instead of a whole clip after. The session starts by feeding the pre-roll's silence
(not counted as input, nor in the timestamps) and runs the same :class:`rolling.RollingSampler` as
:meth:`ReadPipeline.stream` with ``mode="rolling"``, so its frames equal the offline ones too.

A session holds only its own state (portrait latent, feature buffer, SpeechAE history, carry, key, counters,
timings); sessions sharing one pipeline are independent. :func:`run_live` replays a waveform at real speed
and measures the latency of each frame.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from read_jax import audio as audio_lib
from read_jax import media
from read_jax import speech as speech_lib
from read_jax.ans import rolling, sampling
from read_jax.ans.guidance import CFG_MODES, guidance_scales
from read_jax.errors import AudioError, ConfigError
from read_jax.models.speech_ae import SpeechAE
from read_jax.models.vae import FRAMES_PER_LATENT
from read_jax.pipeline import ReadPipeline

CHUNK_MS = 20  # run_live's feeding granularity


@dataclasses.dataclass(frozen=True)
class FrameBlock:
  """One clip's new frames: video frames ``first_frame … first_frame + n − 1`` shown at ``times``."""

  index: int  # clip number j
  first_frame: int  # video frame index of frames[0]
  frames: np.ndarray  # uint8 [n, H, W, 3]
  times: np.ndarray  # float64 [n]: presentation time of each frame, frame index / fps, in seconds


class ClipJob(NamedTuple):
  """What clip ``index`` of a session needs from the sampler (``sampling.run_clip``'s per-session arguments)."""

  index: int
  carry: sampling.ClipCarry
  noise: jax.Array  # [f, h, w, C]
  z_ref: np.ndarray  # [h, w, C]
  speech: np.ndarray  # [f, hw, dA]
  key: jax.Array  # the session's key (the decode draws from fold_in(key, 1_000_000 + index))


@dataclasses.dataclass
class SessionTimings:
  """Wall seconds per stage of one session (the pipeline's own ``timings`` are not touched)."""

  reference: float = 0.0
  speech: float = 0.0  # Whisper windows + SpeechAE latents
  denoise: float = 0.0
  vae_decode: float = 0.0


def history_groups(speech_ae: SpeechAE) -> int:
  """H: earlier 8-frame groups SpeechAE latent k depends on besides its own group k.

  A causal conv with kernel K and stride 2 makes output m read inputs 2m − (K − 2) … 2m + 1; three of them
  make latent k read the (replicated) frame sequence from 8k − 7(K − 2) on: ceil(7(K − 2) / 8) groups back
  (1 for K = 3). No zero padding of any layer is read by a latent with at least H groups before it.
  """
  return -(-(FRAMES_PER_LATENT - 1) * (speech_ae.kernel_size - 2) // FRAMES_PER_LATENT)


def _pcm(pcm) -> np.ndarray:
  """int16 PCM → float32 / 32768; float input checked to be 16 kHz mono in [-1, 1]."""
  pcm = np.asarray(pcm)
  if pcm.ndim != 1:
    raise AudioError(f"LiveSession.feed: need mono samples [n], got shape {pcm.shape}")
  if pcm.dtype == np.int16:
    return pcm.astype(np.float32) / 32768.0
  if not np.issubdtype(pcm.dtype, np.floating):
    raise AudioError(f"LiveSession.feed: need int16 PCM or float32 in [-1, 1], got {pcm.dtype}")
  pcm = pcm.astype(np.float32)
  if pcm.size and not (np.all(np.isfinite(pcm)) and np.max(np.abs(pcm)) <= 1.0):
    raise AudioError("LiveSession.feed: float samples must be finite and in [-1, 1]")
  return pcm


def _default_policy(pipe: ReadPipeline) -> str:
  """"live" (4 s windows), or the encoder's whole window when that is shorter (the test and old demo Whispers)."""
  seconds = pipe.whisper.max_source_positions * speech_lib.STATE_SAMPLES / audio_lib.SAMPLE_RATE
  return "live" if seconds >= speech_lib.DEFAULT_LIVE_SECONDS else f"live:{seconds:g}"


class LiveSession:
  """One push-style generation: ``feed`` audio, take ``frames()``, end with ``finish()`` (module docstring).

  ``policy``: the speech window policy ("live", "live:<seconds>" or a ``WindowPolicy``); None takes
  ``pipe.config.speech_window`` when that is a live policy, else "live" (or the encoder's whole window when
  that is under 4 s). ``mode`` defaults to the config's ``live_mode``; ``steps``/``cfg``/``alpha``/``beta``,
  ``noisy``/``decode_context`` to the pipeline's config as in :meth:`ReadPipeline.stream`; ``seed`` as there.
  """

  def __init__(self, pipe: ReadPipeline, portrait, *, steps: int | None = None, cfg: str | None = None,
               alpha: float | None = None, beta: float | None = None, seed: int = 0, policy=None,
               mode: str | None = None, noisy: int | None = None, decode_context: int | None = None):
    c = pipe.config
    if c.fps != speech_lib.FPS:
      raise ConfigError(f"LiveSession: fps must be {speech_lib.FPS} (two Whisper states per frame), got {c.fps}")
    if policy is None:
      policy = c.speech_window if speech_lib.window_policy(c.speech_window) is not None else _default_policy(pipe)
    self.pipe = pipe
    self.fps = c.fps
    self.clip_frames = c.clip_frames
    self.timings = SessionTimings()
    self._features = speech_lib.LiveSpeechFeatures(pipe.whisper, pipe.whisper_params, policy)
    self.policy = self._features.policy

    steps, cfg, alpha, beta = pipe.sampling_settings(steps, cfg, alpha, beta)
    if cfg not in CFG_MODES:
      raise ConfigError(f"cfg: must be one of {CFG_MODES}, got {cfg!r}")
    self._cfg, self._steps = cfg, steps
    self._guidance = guidance_scales(cfg, alpha, beta)
    self._schedule = jnp.asarray(sampling.timesteps(steps, c.shift))
    self._params = (pipe.dit_params, pipe.text_states())

    t0 = time.perf_counter()
    self._z_ref = np.asarray(pipe.encode_reference(portrait), np.float32)  # [h, w, C]
    self.timings.reference += time.perf_counter() - t0
    self._key = jax.random.key(seed)
    self._carry = sampling.first_carry(self._z_ref.shape, self._schedule.shape[0])

    self._history = history_groups(pipe.speech_ae)
    self._rows = np.zeros((0, pipe.speech_ae.window, pipe.speech_ae.feature_dim), np.float32)  # S rows kept
    self._rows_start = 0  # video frame of _rows[0]
    self._num_rows = 0  # S rows received so far
    self._latents: list[np.ndarray] = []  # speech latents [hw, dA] from latent frame _latents_start on
    self._latents_start = 0
    self.num_samples = 0  # samples fed (before the end's padding)
    self._clip = 0  # next clip to run
    self._emitted = 0  # video frames handed out
    self._num_video = None  # F, known at finish
    self._num_clips = None  # clips in all, known at finish
    self._finished = False

    self.mode = c.live_mode if mode is None else mode
    if self.mode not in rolling.MODES:
      raise ConfigError(f"mode: must be one of {rolling.MODES}, got {self.mode!r}")
    self._pre_samples = 0
    if self.mode == "rolling":
      self.noisy, self.decode_context = pipe.rolling_settings(noisy, decode_context)
      try:
        rolling.check_noisy(steps, self.noisy, self.clip_frames)
      except ValueError as e:
        raise ConfigError(f"LiveSession: {e}") from None
      t0 = time.perf_counter()
      self._pre_roll = pipe.pre_roll_latents(portrait)  # [f − 1, h, w, C]
      self.timings.reference += time.perf_counter() - t0
      self._history_decode = rolling.DecodeHistory(self._pre_roll, self.decode_context)
      self._sampler = None  # made once the pre-roll's speech latents are final
      self._num_latents = None  # stream latents in all, known at finish
      self._pre_samples = rolling.pre_roll_frames(self.clip_frames) * audio_lib.SAMPLE_RATE // self.fps
      self._add_rows(self._features.feed(np.zeros(self._pre_samples, np.float32)))

  # ------------------------------------------------------------------------------------------
  # Audio in

  def feed(self, pcm) -> None:
    """Append 16 kHz mono samples (int16 PCM or float32 in [-1, 1], any count); cheap: the features and speech
    latents that became final are computed, the clips wait for :meth:`frames`."""
    if self._finished:
      raise ValueError("LiveSession: feed after finish")
    pcm = _pcm(pcm)
    self.num_samples += pcm.shape[0]
    t0 = time.perf_counter()
    self._add_rows(self._features.feed(pcm))
    self.timings.speech += time.perf_counter() - t0

  def finish(self) -> list[FrameBlock]:
    """End the stream: pad it with silence to whole clips as the offline path does, and return every block not
    yet handed out (the video trimmed to F = floor(25 · seconds) frames)."""
    self.end()
    return list(self.frames())

  def end(self) -> None:
    """End the stream without running the clips it completes (the serving engine runs them batched)."""
    if not self._finished:
      self._finished = True
      num_video = audio_lib.num_video_frames(self.num_samples, self.fps)
      if num_video < 1:
        raise AudioError(f"LiveSession: {self.num_samples} samples is shorter than one video frame "
                         f"({audio_lib.SAMPLE_RATE // self.fps} samples)")
      num_latents = sampling.latent_frames_for_video(num_video)
      if self.mode == "rolling":
        n_pad = self._num_latents = rolling.stream_latents(num_video, self.clip_frames, self.noisy)
      else:
        n_pad = sampling.padded_frames(num_latents, self.clip_frames)
      # ReadPipeline.speech_features: the wave padded with silence to the video frames of n_pad latent frames.
      samples = int(np.ceil((1 + FRAMES_PER_LATENT * (n_pad - 1)) * audio_lib.SAMPLE_RATE / self.fps))
      t0 = time.perf_counter()
      fed = self._pre_samples + self.num_samples
      self._add_rows(self._features.feed(np.zeros(max(0, samples - fed), np.float32)))
      self._add_rows(self._features.finish())
      self.timings.speech += time.perf_counter() - t0
      self._num_video, self._num_clips = num_video, sampling.num_clips(num_latents, self.clip_frames)

  # ------------------------------------------------------------------------------------------
  # Frames out

  def frames(self) -> Iterator[FrameBlock]:
    """Run and yield each clip whose speech latents are all final (none may be ready: an empty iterator); in
    rolling mode each latent frame the window frees."""
    if self.mode == "rolling":
      yield from self._rolling_frames()
      return
    while (job := self.next_clip()) is not None:
      t0 = time.perf_counter()
      carry, clip = sampling.run_clip(self.pipe.denoiser, self._cfg, self._params, job.carry, job.noise, job.z_ref,
                                      job.speech, self._schedule, self._guidance)
      jax.block_until_ready(clip)
      self.timings.denoise += time.perf_counter() - t0
      t0 = time.perf_counter()
      frames = self.pipe.decode_clip(clip, self._key, job.index)  # uint8 [n, H, W, 3]
      self.timings.vae_decode += time.perf_counter() - t0
      block = self.complete_clip(carry, frames)
      if block is not None:
        yield block

  def _rolling_frames(self) -> Iterator[FrameBlock]:
    f = self.clip_frames
    available = self._latents_start + len(self._latents)  # speech latents final so far (stream indexing)
    if self._sampler is None:
      if available < f - 1:
        return
      self._sampler = rolling.RollingSampler(self.pipe.denoiser, self._cfg, self._params, self._z_ref,
                                             self._guidance, self._pre_roll, np.stack(self._latents[:f - 1]),
                                             self._key, steps=self._steps, noisy=self.noisy, shift=self.pipe.config.shift)
    sampler = self._sampler
    while sampler.q < available and (self._num_latents is None or sampler.q < self._num_latents):
      t0 = time.perf_counter()
      out = sampler.push(self._latents[sampler.q - self._latents_start])
      self._latents, self._latents_start = self._latents[1:], self._latents_start + 1  # no later advance reads it
      if out is None:
        self.timings.denoise += time.perf_counter() - t0
        continue
      jax.block_until_ready(out.latent)
      self.timings.denoise += time.perf_counter() - t0
      t0 = time.perf_counter()
      frames = self.pipe.decode_rolling(self._history_decode.window(out.latent), self._key, out.q)
      self.timings.vae_decode += time.perf_counter() - t0
      first = FRAMES_PER_LATENT * out.r
      if self._num_video is not None:
        frames = frames[:max(0, self._num_video - first)]
      if frames.shape[0]:
        self._emitted = first + frames.shape[0]
        yield FrameBlock(out.r, first, frames, np.arange(first, first + frames.shape[0]) / self.fps)

  @property
  def frames_out(self) -> int:
    """Video frames handed out so far."""
    return self._emitted

  @property
  def done(self) -> bool:
    """Ended and every clip run."""
    if self.mode == "rolling":
      return self._num_latents is not None and self._sampler is not None and self._sampler.q >= self._num_latents
    return self._num_clips is not None and self._clip >= self._num_clips

  @property
  def clip_ready(self) -> bool:
    """Whether :meth:`next_clip` has a clip to give (the speech latents of its last latent frame are final)."""
    j, f = self._clip, self.clip_frames
    if self._num_clips is not None and j >= self._num_clips:
      return False
    return self._latents_start + len(self._latents) >= j * (f - 1) + f

  @property
  def sampling(self) -> tuple:
    """What clips of sessions batched together share: (cfg, params, schedule, guidance)."""
    return self._cfg, self._params, self._schedule, self._guidance

  def next_clip(self) -> ClipJob | None:
    """The inputs of the next clip if its speech latents are all final, else None (nothing changes until
    :meth:`complete_clip` takes its result)."""
    if self.mode == "rolling":
      raise ValueError("LiveSession.next_clip: a rolling-window session has no clips (use frames())")
    if not self.clip_ready:
      return None
    j, f = self._clip, self.clip_frames
    start = j * (f - 1)  # the clip's first latent frame
    speech = np.stack(self._latents[start - self._latents_start:start - self._latents_start + f])  # [f, hw, dA]
    noise = sampling.clip_noise(self._key, j, f, self._z_ref.shape)
    return ClipJob(j, self._carry, noise, self._z_ref, speech, self._key)

  def complete_clip(self, carry: sampling.ClipCarry, frames: np.ndarray) -> FrameBlock | None:
    """Take clip :meth:`next_clip`'s sampler carry and decoded uint8 frames [n, H, W, 3]; its new frames as a
    block (None when the end's trim leaves none)."""
    j, f = self._clip, self.clip_frames
    self._carry = carry
    self._clip += 1
    # The next clip starts at latent frame j(f − 1) + f − 1: drop what no later clip reads.
    drop = j * (f - 1) + f - 1 - self._latents_start
    self._latents, self._latents_start = self._latents[drop:], self._latents_start + drop
    if self._num_video is not None:
      frames = frames[:self._num_video - self._emitted]
    first = self._emitted
    self._emitted += frames.shape[0]
    if not frames.shape[0]:
      return None
    return FrameBlock(j, first, frames, np.arange(first, first + frames.shape[0]) / self.fps)

  # ------------------------------------------------------------------------------------------
  # Speech latents, incrementally

  def _add_rows(self, rows: np.ndarray) -> None:
    """Take new S rows [n, Hw, DA] and encode every speech latent they complete."""
    if rows.shape[0]:
      self._rows = np.concatenate([self._rows, rows])
      self._num_rows += rows.shape[0]
    while True:
      k = self._latents_start + len(self._latents)
      if self._num_rows < 1 + FRAMES_PER_LATENT * k:  # latent k reads frames ≤ 8k
        return
      self._latents.append(self._encode_latent(k))

  def _encode_latent(self, k: int) -> np.ndarray:
    """Speech latent k [hw, dA] from a window of 1 + 8(H + 1) frames (one compiled shape for every k).

    k ≤ H: frames 0 … 8k, zero-padded at the end (causal: latent k reads no later frame). k > H: one stand-in
    frame (the encoder replicates its first frame into group 0), then the H groups before group k and group k;
    the window's last latent then reads exactly the frames the whole encode's latent k reads.
    """
    h = self._history
    length = 1 + FRAMES_PER_LATENT * (h + 1)
    if k <= h:
      window = np.zeros((length,) + self._rows.shape[1:], np.float32)
      window[:1 + FRAMES_PER_LATENT * k] = self._rows[:1 + FRAMES_PER_LATENT * k]  # _rows_start is 0 here
      index = k
    else:
      lo = FRAMES_PER_LATENT * (k - h) - FRAMES_PER_LATENT - self._rows_start  # stand-in: frame 8(k − h − 1)
      window = self._rows[lo:lo + length]
      index = h + 1
      # Later latents start their windows 8 frames further on: keep only from the next one's first frame.
      keep = lo + FRAMES_PER_LATENT
      self._rows, self._rows_start = self._rows[keep:], self._rows_start + keep
    c = self.pipe.encode_speech(jnp.asarray(window)[None])
    return np.asarray(c, np.float32)[0, index]  # [hw, dA] (indexed on the host: one program for every k)


# ---------------------------------------------------------------------------------------------
# Real-time replay


@dataclasses.dataclass(frozen=True)
class LatencyStats:
  """Per-frame latency of a replay: the wall time a frame came out minus the moment its instant was spoken."""

  first: float  # seconds, frame 0 (the wait before the video starts)
  worst: float  # seconds, the largest over all frames
  mean: float  # seconds, over all frames
  frames: int  # video frames generated
  blocks: int  # clips
  wall: float  # seconds from the first sample fed to the last frame out
  audio_seconds: float


def run_live(pipe: ReadPipeline, portrait, wave, out_path=None, realtime: bool = True, *, chunk_ms: int = CHUNK_MS,
             on_block: Callable[[FrameBlock, np.ndarray], None] | None = None, **session_kwargs) -> LatencyStats:
  """Replay ``wave`` (16 kHz float32) into a :class:`LiveSession` in ``chunk_ms`` chunks, at real speed when
  ``realtime`` (each chunk fed when its last sample would have been spoken; compute in the same thread delays
  the feeding), and measure each frame's latency; the frames go to ``out_path`` (mp4, speech muxed) if given.
  ``on_block(block, latencies)`` is called as each block comes out (latencies: seconds, one per frame).

  Frame i's instant is spoken at start + i / fps; its latency is the wall time its block came out minus that.
  """
  wave = audio_lib.check_wave(np.asarray(wave, np.float32), "run_live")
  session = LiveSession(pipe, portrait, **session_kwargs)
  chunk = audio_lib.SAMPLE_RATE * chunk_ms // 1000
  latencies, blocks = [], 0
  video = media.VideoWriter(out_path, fps=session.fps, audio=(wave, audio_lib.SAMPLE_RATE)) if out_path else None
  with video if video is not None else contextlib.nullcontext() as writer:
    start = time.perf_counter()

    def take(block_iter):
      nonlocal blocks
      for block in block_iter:
        latencies.append(time.perf_counter() - start - block.times)  # [n]
        blocks += 1
        if on_block is not None:
          on_block(block, latencies[-1])
        if writer is not None:
          writer.write(block.frames)

    for lo in range(0, wave.shape[0], chunk):
      pcm = wave[lo:lo + chunk]
      if realtime:
        spoken = (lo + pcm.shape[0]) / audio_lib.SAMPLE_RATE
        time.sleep(max(0.0, spoken - (time.perf_counter() - start)))
      session.feed(pcm)
      take(session.frames())
    take(session.finish())
    wall = time.perf_counter() - start
  lat = np.concatenate(latencies) if latencies else np.zeros(0)
  return LatencyStats(first=float(lat[0]) if lat.size else math.nan, worst=float(lat.max()) if lat.size else math.nan,
                      mean=float(lat.mean()) if lat.size else math.nan, frames=int(lat.size), blocks=blocks,
                      wall=wall, audio_seconds=wave.shape[0] / audio_lib.SAMPLE_RATE)


__all__ = ["ClipJob", "FrameBlock", "LatencyStats", "LiveSession", "SessionTimings", "history_groups", "run_live"]
