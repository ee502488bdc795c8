"""Online generation: a session fed 16 kHz PCM as it arrives, handing out frames as soon as they are final.

  session = LiveSession(pipe, "face.png", policy="live")   # per-session state only
  for pcm in microphone:                                   # any chunk size, int16 or float32 in [-1, 1]
    session.feed(pcm)
    for block in session.frames():                         # FrameBlock(index, first_frame, frames, times)
      show(block.frames, block.times)
  for block in session.finish():                           # the end padded with silence, the rest flushed
    show(block.frames, block.times)

One session class per live mode, sharing the feeding and the speech state (:class:`LiveSession`, which also
picks the class: ``LiveSession(pipe, portrait)`` is a session of the checkpoint's ``live_mode``):

Clip mode (:class:`ClipSession`): clip j of f latent frames covers latent frames j(f−1) … j(f−1) + f − 1
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

Rolling mode (:class:`RollingSession`, :mod:`read_jax.ans.rolling`): the window advances as soon as one latent frame's
speech latent is final, so each block is one latent frame (8 video frames) and comes out ``noisy − 1`` latent
frames after its audio instead of a whole clip after. The session starts by feeding the pre-roll's silence
(not counted as input, nor in the timestamps) and runs the same :class:`rolling.RollingSampler` as
:meth:`ReadPipeline.stream` with ``mode="rolling"``, so its frames equal the offline ones too.

``feed`` only queues the audio: each unit turns into speech what it needs, so :meth:`LiveSession.interrupt` can
drop the audio fed ahead of the frames (a voice agent cutting its own speech) and the session goes on from the
audio kept, with the same frames as a session fed only that and what comes after.

A session holds only its own state (portrait latent, feature buffer, SpeechAE history, carry or window, key,
counters, timings); sessions sharing one pipeline are independent. Its device work comes in units: ``next_work()``
gives the next one whose speech is final, and the two device stages of a unit run batched across sessions of one
class (:meth:`LiveSession.denoise_batch`, :meth:`LiveSession.decode_batch`: the serving engine) or alone
(:meth:`LiveSession.frames`), with the same frames. :func:`run_live` replays a waveform at real speed and measures
the latency of each frame.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from read_jax import audio as audio_lib
from read_jax import media
from read_jax import speech as speech_lib
from read_jax.ans import causal, rolling, sampling, solvers
from read_jax.errors import AudioError, ConfigError
from read_jax.models.speech_ae import SpeechAE
from read_jax.constants import FPS, FRAMES_PER_LATENT, SAMPLE_RATE
from read_jax.models.vae import DecodeState
from read_jax.pipeline import ReadPipeline, decode_key

CHUNK_MS = 20  # run_live's feeding granularity


@dataclasses.dataclass(frozen=True)
class FrameBlock:
  """One unit's new frames: video frames ``first_frame … first_frame + n − 1`` shown at ``times``."""

  index: int  # clip number j (clip mode) or real latent frame r (rolling mode)
  first_frame: int  # video frame index of frames[0]
  frames: np.ndarray  # uint8 [n, H, W, 3]
  times: np.ndarray  # float64 [n]: presentation time of each frame, frame index / fps, in seconds


class Work(NamedTuple):
  """One unit of a session's device work: ``inputs`` (a pytree of per-session arrays; a batch stacks them) for
  its class's :meth:`LiveSession.denoise_batch`, compiled for ``static`` (units batch together only with equal
  ones)."""

  index: int  # clip j, or stream latent q
  inputs: Any  # sampling.ClipInputs | rolling.WindowInputs
  static: tuple = ()  # hashable settings of the program: the rolling window's (noisy, substeps)


class DecodeJob(NamedTuple):
  """The latents a unit's frames decode from: alone (a clip, or a rolling window's last frame with the latents
  before it) with the decode noise's key, or as the next latents of the session's decode stream (a causal
  decoder: :meth:`ReadPipeline.start_decode`)."""

  latents: np.ndarray | jax.Array  # [T, h, w, C]
  key: jax.Array | None  # a lone decode's noise (a stream's state carries its own)
  stream: DecodeState | None = None  # the session's stream, or None: decode alone
  keep: slice = slice(None)  # the unit's frames of a lone decode


class Decoded(NamedTuple):
  """A unit's decoded frames, and the session's decode stream after them (None without one)."""

  frames: np.ndarray  # uint8 [n, H, W, 3]
  stream: DecodeState | None


@dataclasses.dataclass
class SessionTimings:
  """Wall seconds per stage of one session run alone (the pipeline's own ``timings`` are not touched)."""

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
  seconds = pipe.speech_encoder.window_samples / SAMPLE_RATE
  return "live" if seconds >= speech_lib.DEFAULT_LIVE_SECONDS else f"live:{seconds:g}"


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _padded(items: list, size: int | None) -> list:
  """``items`` padded to ``size`` with copies of the first (a compiled batch size; None: as they are)."""
  return items + [items[0]] * ((size or len(items)) - len(items))


class LiveSession:
  """One push-style generation: ``feed`` audio, take ``frames()``, end with ``finish()`` (module docstring).

  ``LiveSession(pipe, portrait, mode=...)`` makes the session class of ``mode`` (:data:`SESSIONS`; the config's
  ``live_mode`` when None). ``policy``: the speech window policy ("live", "live:<seconds>" or a ``WindowPolicy``);
  None takes ``pipe.config.speech_window`` when that is a live policy, else "live" (or the encoder's whole window
  when that is under 4 s). ``steps``/``cfg``/``alpha``/``beta``/``solver`` make the sampler as
  :meth:`ReadPipeline.sampler` does; ``seed`` as in :meth:`ReadPipeline.stream`.
  """

  mode: ClassVar[str]

  def __new__(cls, pipe: ReadPipeline, *args, mode: str | None = None, **kwargs):
    if cls is LiveSession:
      mode = pipe.config.live_mode if mode is None else mode
      if mode not in SESSIONS:
        raise ConfigError(f"must be one of {tuple(SESSIONS)}", arg="mode", value=mode)
      cls = SESSIONS[mode]
    return super().__new__(cls)

  def __init__(self, pipe: ReadPipeline, portrait, *, steps: int | None = None, cfg: str | None = None,
               alpha: float | None = None, beta: float | None = None, solver: str | None = None, seed: int = 0,
               policy=None, mode: str | None = None):
    c = pipe.config
    if mode is not None and mode != self.mode:
      raise ConfigError(f"a {type(self).__name__} is mode {self.mode!r}", arg="mode", value=mode)
    if c.fps != FPS:
      raise ConfigError(f"LiveSession: fps must be {FPS} (two speech states per frame), got {c.fps}")
    if policy is None:
      policy = c.speech_window if speech_lib.window_policy(c.speech_window) is not None else _default_policy(pipe)
    self.pipe = pipe
    self.fps = c.fps
    self.clip_frames = c.clip_frames
    self.timings = SessionTimings()
    self._features = speech_lib.LiveSpeechFeatures(pipe.speech_encoder, policy)
    self.policy = self._features.policy
    self.sampler = pipe.sampler(steps=steps, cfg=cfg, alpha=alpha, beta=beta, solver=solver)
    self.params = pipe.denoiser_params()

    t0 = time.perf_counter()
    self._z_ref = np.asarray(pipe.encode_reference(portrait), np.float32)  # [h, w, C]
    self.timings.reference += time.perf_counter() - t0
    self._key = jax.random.key(seed)

    self._history = history_groups(pipe.speech_ae)
    self._rows = np.zeros((0, pipe.speech_ae.window, pipe.speech_ae.feature_dim), np.float32)  # S rows kept
    self._rows_start = 0  # video frame of _rows[0]
    self._num_rows = 0  # S rows received so far
    self._latents: list[np.ndarray] = []  # speech latents [hw, dA] from latent frame _latents_start on
    self._latents_start = 0
    self.num_samples = 0  # samples fed and kept (before the end's padding; interrupt() takes back what it drops)
    self._pending: list[np.ndarray] = []  # fed audio not yet turned into speech features (interrupt() drops it)
    self._pending_samples = 0
    self._pre_samples = 0  # silence fed before the speech (not counted, nor in the timestamps)
    self._emitted = 0  # video frames handed out
    self._num_video = None  # F, known at finish
    self._finished = False

  # ------------------------------------------------------------------------------------------
  # Audio in

  def feed(self, pcm) -> None:
    """Append 16 kHz mono samples (int16 PCM or float32 in [-1, 1], any count); cheap: the audio waits, and each
    unit turns into speech features and latents what it needs (:meth:`next_work`), no further ahead, so audio
    fed ahead of the frames stays droppable (:meth:`interrupt`)."""
    if self._finished:
      raise ValueError("LiveSession: feed after finish")
    pcm = _pcm(pcm)
    self.num_samples += pcm.shape[0]
    if pcm.shape[0]:
      self._pending.append(pcm)
      self._pending_samples += pcm.shape[0]

  def interrupt(self) -> int:
    """Drop the audio fed and not yet turned into speech: everything past what the unit being made needs (the
    frames of that unit, at most, still show the speech before; a clip in clip mode, a latent frame in the rolling
    and causal modes, plus the 140 ms look-ahead). The stream goes on from the audio kept, so the frames from here
    on follow only the audio fed after (silence: the mouth closes); the session stays open. The samples dropped
    (0 after the end)."""
    dropped = self._pending_samples
    self._pending, self._pending_samples = [], 0
    self.num_samples -= dropped
    return dropped

  def finish(self) -> list[FrameBlock]:
    """End the stream: pad it with silence as the offline path does, and return every block not yet handed out
    (the video trimmed to F = floor(25 · seconds) frames)."""
    self.end()
    return list(self.frames())

  def end(self) -> None:
    """End the stream without running the work it completes (the serving engine runs it batched)."""
    if self._finished:
      return
    self._speech_for(None)
    self._finished = True
    num_video = audio_lib.num_video_frames(self.num_samples, self.fps)
    if num_video < 1:
      raise AudioError(f"LiveSession: {self.num_samples} samples is shorter than one video frame "
                       f"({audio_lib.SAMPLE_RATE // self.fps} samples)")
    n_pad = self._stream_latents(num_video)
    # ReadPipeline.speech_features: the wave padded with silence to the video frames of n_pad latent frames.
    samples = int(np.ceil((1 + FRAMES_PER_LATENT * (n_pad - 1)) * audio_lib.SAMPLE_RATE / self.fps))
    t0 = time.perf_counter()
    fed = self._pre_samples + self.num_samples
    self._add_rows(self._features.feed(np.zeros(max(0, samples - fed), np.float32)))
    self._add_rows(self._features.finish())
    self.timings.speech += time.perf_counter() - t0
    self._num_video = num_video

  # ------------------------------------------------------------------------------------------
  # Frames out

  def frames(self) -> Iterator[FrameBlock]:
    """Run and yield each unit whose speech latents are all final (none may be ready: an empty iterator)."""
    cls = type(self)
    while (work := self.next_work()) is not None:
      t0 = time.perf_counter()
      out = cls.denoise_batch(self.pipe, self.sampler, self.params, [work], batched=False)[0]
      jax.block_until_ready(out)
      self.timings.denoise += time.perf_counter() - t0
      job = self.take_denoised(work, out)
      decoded = None
      if job is not None:
        t0 = time.perf_counter()
        decoded = cls.decode_batch(self.pipe, [job], batched=False)[0]
        self.timings.vae_decode += time.perf_counter() - t0
      block = self.complete(work, decoded)
      if block is not None:
        yield block

  @property
  def frames_out(self) -> int:
    """Video frames handed out so far."""
    return self._emitted

  @property
  def work_ready(self) -> bool:
    """Whether :meth:`next_work` has a unit to give."""
    raise NotImplementedError

  @property
  def done(self) -> bool:
    """Ended and every unit run."""
    raise NotImplementedError

  def next_work(self) -> Work | None:
    """The next unit whose speech latents are all final, else None; the session waits for its result
    (:meth:`take_denoised`, then :meth:`complete`) before it gives another."""
    raise NotImplementedError

  @classmethod
  def denoise_batch(cls, pipe: ReadPipeline, sampler: solvers.Sampler, params, works: list[Work], *,
                    batched: bool = True, size: int | None = None) -> list:
    """The sampler's device work of ``works`` (sessions of this class), one output per work; ``batched``: one
    vmapped call padded to ``size`` rows (one compiled program per size), else one unbatched call per work."""
    raise NotImplementedError

  def take_denoised(self, work: Work, out) -> DecodeJob | None:
    """Take ``work``'s sampler output; the latents its frames decode from (None: nothing to show yet)."""
    raise NotImplementedError

  @classmethod
  def decode_batch(cls, pipe: ReadPipeline, jobs: list[DecodeJob], *, batched: bool = True,
                   size: int | None = None) -> list[Decoded]:
    """The frames of each job, batched as :meth:`denoise_batch` (the jobs of one class have one latents shape;
    a stream's first step, which primes it, runs alone)."""
    out: list = [None] * len(jobs)
    lone = [i for i, job in enumerate(jobs) if job.stream is None]
    flowing = [i for i, job in enumerate(jobs) if job.stream is not None and job.stream.cache is not None]
    if not batched:
      lone, flowing = [], []
    if lone:
      rows = _padded([jobs[i] for i in lone], size)
      frames = pipe.decode_frames_batch(jnp.stack([job.latents for job in rows]), [job.key for job in rows])
      for b, i in enumerate(lone):
        out[i] = Decoded(frames[b][jobs[i].keep], None)
    if flowing:
      rows = _padded([jobs[i] for i in flowing], size)
      decoded = pipe.decode_stream_batch([job.stream for job in rows], jnp.stack([job.latents for job in rows]))
      for (stream, frames), i in zip(decoded, flowing):
        out[i] = Decoded(frames, stream)
    for i, job in enumerate(jobs):
      if out[i] is None:  # unbatched, or a stream's first step
        if job.stream is None:
          out[i] = Decoded(pipe.decode_frames(job.latents, job.key)[job.keep], None)
        else:
          out[i] = Decoded(*reversed(pipe.decode_stream_step(job.stream, job.latents)))
    return out

  def complete(self, work: Work, decoded: Decoded | None) -> FrameBlock | None:
    """Take ``work``'s decoded frames (None: the unit freed none); its new frames as a block (None when none)."""
    raise NotImplementedError

  def _stream_latents(self, num_video: int) -> int:
    """Latent frames the stream of ``num_video`` frames runs in all (its speech padded with silence to them)."""
    raise NotImplementedError

  def _block(self, index: int, first: int, decoded: Decoded | None) -> FrameBlock | None:
    """The block of ``decoded``'s frames starting at video frame ``first``, trimmed to the stream's end; the
    session's decode stream moves on."""
    if decoded is None:
      return None
    frames = decoded.frames
    if decoded.stream is not None:
      self._stream = decoded.stream
    if self._num_video is not None:
      frames = frames[:max(0, self._num_video - first)]
    if not frames.shape[0]:
      return None
    self._emitted = first + frames.shape[0]
    return FrameBlock(index, first, frames, np.arange(first, first + frames.shape[0]) / self.fps)

  # ------------------------------------------------------------------------------------------
  # Speech latents, incrementally

  @property
  def _available(self) -> int:
    """Speech latents final so far (their latent frames, from the stream's start)."""
    return self._latents_start + len(self._latents)

  def _final(self, k: int) -> bool:
    """Whether speech latent ``k`` is final, or will be once the pending audio is turned into speech (cheap: no
    device work, so the serving engine asks it under its lock)."""
    if self._available > k:
      return True
    total = self._features.num_samples + self._pending_samples
    return not self._finished and self._features.policy.window_end(k) <= total

  def _speech_for(self, k: int | None) -> None:
    """Turn pending audio into speech features and latents up to the end of speech latent ``k``'s window (None:
    all of it); the rest stays pending. Latent k's window is its audio plus the look-ahead, so this is what the
    unit that needs latent k needs, and audio beyond it is never used before a unit needs it."""
    if not self._pending_samples or (k is not None and self._available > k):
      return
    pcm = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
    n = pcm.shape[0]
    if k is not None:
      n = min(n, max(int(math.ceil(float(self._features.policy.window_end(k)))) - self._features.num_samples, 0))
    rest = pcm[n:]
    self._pending, self._pending_samples = ([rest] if rest.size else []), rest.shape[0]
    t0 = time.perf_counter()
    self._add_rows(self._features.feed(pcm[:n]))
    self.timings.speech += time.perf_counter() - t0

  def _drop_latents(self, upto: int) -> None:
    """Forget the speech latents before latent frame ``upto`` (no later unit reads them)."""
    drop = upto - self._latents_start
    self._latents, self._latents_start = self._latents[drop:], upto

  def _add_rows(self, rows: np.ndarray) -> None:
    """Take new S rows [n, Hw, DA] and encode every speech latent they complete."""
    if rows.shape[0]:
      self._rows = np.concatenate([self._rows, rows])
      self._num_rows += rows.shape[0]
    while True:
      k = self._available
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


class ClipSession(LiveSession):
  """Clip mode (module docstring): each unit is one ANS clip of f latent frames, run once all its speech is final."""

  mode = "clip"

  def __init__(self, pipe: ReadPipeline, portrait, *, noisy: int | None = None, decode_context: int | None = None,
               **kwargs):
    for name, value in (("noisy", noisy), ("decode_context", decode_context)):
      if value is not None:
        raise ConfigError("a setting of the rolling window, not of clip mode", arg=name, value=value)
    super().__init__(pipe, portrait, **kwargs)
    self._stream = pipe.start_decode(self._key)  # a causal decoder: clips continue one decode stream
    self._carry = sampling.first_carry(self._z_ref.shape, self.sampler.steps)
    self._clip = 0  # next clip to run
    self._num_clips = None  # clips in all, known at the end

  def _stream_latents(self, num_video: int) -> int:
    num_latents = sampling.latent_frames_for_video(num_video)
    self._num_clips = sampling.num_clips(num_latents, self.clip_frames)
    return sampling.padded_frames(num_latents, self.clip_frames)

  @property
  def done(self) -> bool:
    return self._num_clips is not None and self._clip >= self._num_clips

  @property
  def work_ready(self) -> bool:
    j, f = self._clip, self.clip_frames
    if self._num_clips is not None and j >= self._num_clips:
      return False
    return self._final(j * (f - 1) + f - 1)

  def next_work(self) -> Work | None:
    self._speech_for(self._clip * (self.clip_frames - 1) + self.clip_frames - 1)  # the clip's last latent frame
    if not self.work_ready:
      return None
    j, f = self._clip, self.clip_frames
    start = j * (f - 1) - self._latents_start  # the clip's first latent frame, in _latents
    speech = np.stack(self._latents[start:start + f])  # [f, hw, dA]
    noise = sampling.clip_noise(self._key, j, f, self._z_ref.shape)
    return Work(j, sampling.ClipInputs(self._carry, noise, self._z_ref, speech))

  @classmethod
  def denoise_batch(cls, pipe, sampler, params, works, *, batched=True, size=None):
    if not batched:
      return [sampling.run_clip(pipe.denoiser, sampler, params, w.inputs) for w in works]
    inputs = _stack([w.inputs for w in _padded(works, size)])
    carry, clips = sampling.run_clips(pipe.denoiser, sampler, params, inputs)
    return [(jax.tree.map(lambda x, b=b: x[b], carry), clips[b]) for b in range(len(works))]

  def take_denoised(self, work, out) -> DecodeJob:
    j, f = work.index, self.clip_frames
    self._carry = out[0]
    self._clip += 1
    self._drop_latents(j * (f - 1) + f - 1)  # the next clip starts at its last latent frame
    clip = out[1]
    if self._stream is not None:  # its new latents continue the stream
      return DecodeJob(clip if j == 0 else clip[1:], None, self._stream)
    # Alone, clip j > 0 decodes its shared first latent as a lone first frame: that frame is clip j − 1's.
    return DecodeJob(clip, decode_key(self._key, j), keep=slice(0 if j == 0 else 1, None))

  def complete(self, work, decoded):
    return self._block(work.index, self._emitted, decoded)


class RollingSession(LiveSession):
  """Rolling mode (module docstring): each unit is one advance of the window, which frees one latent frame.

  ``noisy``/``decode_context``: the window's noisy frames W and the latent frames each freed one is decoded with
  (the config's where None, :meth:`ReadPipeline.rolling_settings`). The session starts by feeding the pre-roll's
  silence (:mod:`read_jax.ans.rolling`).
  """

  mode = "rolling"

  def __init__(self, pipe: ReadPipeline, portrait, *, noisy: int | None = None, decode_context: int | None = None,
               **kwargs):
    super().__init__(pipe, portrait, **kwargs)
    self.noisy, self.decode_context = pipe.rolling_settings(noisy, decode_context)
    rolling.check_noisy(self.sampler.steps, self.noisy, self.clip_frames)
    t0 = time.perf_counter()
    self._pre_roll = pipe.pre_roll_latents(portrait)  # [f − 1, h, w, C]
    self.timings.reference += time.perf_counter() - t0
    self._decode_history = rolling.DecodeHistory(self._pre_roll, self.decode_context)
    # A causal decoder: one stream, primed with the pre-roll (its frames not shown); else windows of decode_context.
    self._stream = pipe.start_decode(self._key, self._pre_roll)
    self._window = None  # the RollingSampler, made once the pre-roll's speech latents are final
    self._num_latents = None  # stream latents in all, known at the end
    self._pre_samples = rolling.pre_roll_frames(self.clip_frames) * audio_lib.SAMPLE_RATE // self.fps
    self._features, rows = pipe.live_speech_features(self.policy, self._pre_samples)  # the silence, computed once
    self._add_rows(rows)

  def _stream_latents(self, num_video: int) -> int:
    self._num_latents = rolling.stream_latents(num_video, self.clip_frames, self.noisy)
    return self._num_latents

  def _sampler_window(self) -> rolling.RollingSampler | None:
    f = self.clip_frames
    if self._window is None and self._available >= f - 1:
      self._window = rolling.RollingSampler(self.pipe.denoiser, self.sampler, self.params, self._z_ref,
                                            self._pre_roll, np.stack(self._latents[:f - 1]), self._key,
                                            noisy=self.noisy)
    return self._window

  @property
  def done(self) -> bool:
    return self._num_latents is not None and self._window is not None and self._window.q >= self._num_latents

  @property
  def _next_latent(self) -> int:
    """The stream latent the next advance takes in (the first, f − 1, needs the pre-roll's before it too)."""
    return self.clip_frames - 1 if self._window is None else self._window.q

  @property
  def work_ready(self) -> bool:
    q = self._next_latent
    return self._final(q) and (self._num_latents is None or q < self._num_latents)

  def next_work(self) -> Work | None:
    self._speech_for(self._next_latent)
    if not self.work_ready:
      return None
    self._sampler_window()
    q = self._window.q
    job = self._window.job(self._latents[q - self._latents_start])
    self._drop_latents(q + 1)  # no later advance reads it
    return Work(q, job, (self.noisy, self._window.substeps))

  @classmethod
  def denoise_batch(cls, pipe, sampler, params, works, *, batched=True, size=None):
    noisy, substeps = works[0].static
    if not batched:
      return [rolling.advance(pipe.denoiser, sampler, params, w.inputs, noisy=noisy, substeps=substeps)
              for w in works]
    inputs = _stack([w.inputs for w in _padded(works, size)])
    windows = rolling.advance_batch(pipe.denoiser, sampler, params, inputs, noisy=noisy, substeps=substeps)
    return list(windows[:len(works)])

  def take_denoised(self, work, out) -> DecodeJob | None:
    emitted = self._window.complete(work.inputs, out)
    if emitted is None:
      return None
    if self._stream is not None:
      return DecodeJob(np.asarray(emitted.latent)[None], None, self._stream)
    return DecodeJob(self._decode_history.window(emitted.latent), decode_key(self._key, emitted.q),
                     keep=slice(-FRAMES_PER_LATENT, None))

  def complete(self, work, decoded):
    r = work.index - (self.noisy - 1) - (self.clip_frames - 1)  # the real latent frame freed
    return self._block(r, FRAMES_PER_LATENT * r, decoded)


class CausalSession(RollingSession):
  """Causal mode (:mod:`read_jax.ans.causal`): the rolling session's units (one latent frame each, the same pre-roll,
  feeding and decoding), run through the KV-cached window of a causal model, one noisy frame. The programs of its
  first advance and first decode are compiled (or loaded from the persistent cache) when the session is made, before
  the speech starts, so the first block does not wait for them."""

  mode = "causal"

  def __init__(self, pipe: ReadPipeline, portrait, *, noisy: int | None = None, decode_context: int | None = None,
               **kwargs):
    if noisy not in (None, 1):
      raise ConfigError(f"LiveSession: mode 'causal' has one noisy frame, got noisy={noisy}")
    super().__init__(pipe, portrait, noisy=1, decode_context=decode_context, **kwargs)
    try:
      causal.check_causal(self.sampler, pipe.dit)
    except ValueError as e:
      raise ConfigError(f"LiveSession: {e}") from None
    self._warm()

  def _warm(self) -> None:
    """Run the window's programs once on stand-in inputs of the session's shapes (nothing of the session changes)."""
    t0 = time.perf_counter()
    f, shape = self.clip_frames, self._z_ref.shape
    speech = np.zeros((f - 1, self.pipe.dit.audio_tokens, self.pipe.dit.audio_dim), np.float32)
    window = causal.CausalWindow(self.pipe.denoiser, self.sampler, self.params, self._z_ref, self._pre_roll, speech,
                                 self._key)
    job = window.job(speech[0])
    jax.block_until_ready(causal.advance(self.pipe.denoiser, self.sampler, self.params, job))
    if self._stream is None:
      self.pipe.decode_frames(np.zeros((self.decode_context,) + shape, np.float32), decode_key(self._key, 0))
    else:  # a step of the decode stream on a stand-in latent (the state is a value: the session's stays as it is)
      self.pipe.decode_stream_step(self._stream, np.zeros((1,) + shape, np.float32))
    self.timings.reference += time.perf_counter() - t0

  def _sampler_window(self) -> causal.CausalWindow | None:
    f = self.clip_frames
    if self._window is None and self._available >= f - 1:
      self._window = causal.CausalWindow(self.pipe.denoiser, self.sampler, self.params, self._z_ref, self._pre_roll,
                                         np.stack(self._latents[:f - 1]), self._key)
    return self._window

  @classmethod
  def denoise_batch(cls, pipe, sampler, params, works, *, batched=True, size=None):
    if not batched:
      return [causal.advance(pipe.denoiser, sampler, params, w.inputs) for w in works]
    inputs = _stack([w.inputs for w in _padded(works, size)])
    latents, caches = causal.advance_batch(pipe.denoiser, sampler, params, inputs)
    return [(latents[b], jax.tree.map(lambda x, b=b: x[b], caches)) for b in range(len(works))]


SESSIONS = {cls.mode: cls for cls in (ClipSession, RollingSession, CausalSession)}  # live mode → session class

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


__all__ = ["ClipSession", "DecodeJob", "FrameBlock", "LatencyStats", "LiveSession", "RollingSession", "SESSIONS",
           "SessionTimings", "Work", "history_groups", "run_live"]
