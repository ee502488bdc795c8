"""A LiveKit Agents avatar on the serving engine: a voice agent's speech in, lip-synced video and the same speech
out, published in the agent's room (docs/serving.md, "Behind a LiveKit voice agent"). Needs the ``livekit``
extra (``pip install -e ".[livekit]"``); nothing else in the package imports this module.

  engine = Engine(pipe, batch_sizes=(1,), max_sessions=1).start()
  video = AvatarVideoGenerator(engine, "face.png")        # a livekit.agents.voice.avatar.VideoGenerator
  runner = AvatarRunner(room, audio_recv=DataStreamAudioReceiver(room), video_gen=video, options=video.options)
  await runner.start()

or the whole worker for one room: :func:`run_worker` (``scripts/livekit_worker.py``).

How the generator works: the agent's audio (any rate and channel count) is resampled to 16 kHz mono and fed to
one engine session as it is pushed; while none comes, silence is fed, just enough to stay ``lead`` samples ahead
of the frames handed out, so the avatar keeps moving with its mouth shut and speech starts within about a block
plus the lead. Iterating yields, for each video frame i at 25 fps, the frame (RGBA) and then the 40 ms of 16 kHz
audio the frame was made from (samples 640 i … 640 (i + 1) of what the session used): the runner's
``AVSynchronizer`` plays them together, and its pacing is what clocks the silence. ``push_audio(AudioSegmentEnd())``
marks the end of the agent's turn: once the frame holding its last sample is out, an ``AudioSegmentEnd`` follows
(the runner then reports the playback finished). ``clear_buffer()`` (the user barged in) drops the audio not yet
used (:meth:`read_jax.serve.engine.Engine.interrupt`) and the turn's pending ``AudioSegmentEnd``: within a block the
frames show silence again.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

try:
  from livekit import rtc
  from livekit.agents.voice.avatar import (AudioSegmentEnd, AvatarOptions, AvatarRunner, DataStreamAudioReceiver,
                                           VideoGenerator)
except ImportError as e:  # an optional extra: say which
  raise ImportError(f"read_jax.serve.livekit needs the livekit extra (pip install -e \".[livekit]\"): {e}") from e

from read_jax.constants import FPS, SAMPLE_RATE
from read_jax.errors import InputError
from read_jax.serve.engine import Engine

FRAME_SAMPLES = SAMPLE_RATE // FPS  # 640: the 16 kHz audio of one video frame
MAX_PENDING_BLOCKS = 2  # blocks the engine makes ahead of the frames handed out
log = logging.getLogger(__name__)


class AvatarVideoGenerator(VideoGenerator):
  """The avatar of one engine session as a LiveKit ``VideoGenerator`` (module docstring). ``portrait``: an image
  path or uint8 [H, W, 3]; ``lead_seconds``: silence fed beyond the first block's audio and look-ahead (the
  margin that lets the next block be made while one plays). The session opens when iteration starts and is
  cancelled when the iteration ends."""

  def __init__(self, engine: Engine, portrait, *, seed: int = 0, lead_seconds: float = 0.32):
    if engine.first_block_samples is None:
      raise InputError("AvatarVideoGenerator: the engine is not started (Engine.start())")
    self.engine = engine
    self.portrait = portrait
    self.seed = seed
    size = engine.pipe.config.resolution
    self.options = AvatarOptions(video_width=size, video_height=size, video_fps=FPS, audio_sample_rate=SAMPLE_RATE,
                                 audio_channels=1)
    self.lead = engine.first_block_samples + int(lead_seconds * SAMPLE_RATE)  # samples ahead of the frames out
    self.frames_out = 0  # video frames handed out
    self._sid = None
    self._early: list[np.ndarray] = []  # audio pushed before the session opened
    self._resampler = None
    self._resampler_rate = None
    self._fed = 0  # samples passed on (early ones included), counting what interrupts dropped since
    self._dropped = 0  # samples interrupts dropped, as the engine reported them
    self._timeline = np.zeros(0, np.int16)  # the session's audio from sample _timeline_start on
    self._timeline_start = 0
    self._segment_ends: list[int] = []  # where each pushed AudioSegmentEnd falls, in _fed's count

  # ------------------------------------------------------------------------------------------
  # Audio in (the runner's audio task)

  async def push_audio(self, frame) -> None:
    if isinstance(frame, AudioSegmentEnd):
      if self._resampler is not None:
        for out in self._resampler.flush():
          self._feed(_samples(out))
        self._resampler = None
      self._segment_ends.append(self._fed)
      return
    pcm = _samples(frame)  # [n] int16, channels averaged
    if frame.sample_rate != SAMPLE_RATE:
      if self._resampler_rate != frame.sample_rate:
        self._resampler = rtc.AudioResampler(frame.sample_rate, SAMPLE_RATE, num_channels=1)
        self._resampler_rate = frame.sample_rate
      for out in self._resampler.push(bytearray(pcm.tobytes())):
        self._feed(_samples(out))
    else:
      self._feed(pcm)

  def clear_buffer(self) -> None:
    """The agent's speech stops: drop its audio not yet used and its turn's end; silence from here on."""
    self._resampler, self._resampler_rate = None, None
    self._segment_ends.clear()
    if self._sid is None:  # nothing was passed on yet
      n = sum(pcm.shape[0] for pcm in self._early)
      self._early.clear()
      self._fed -= n
      self._timeline = self._timeline[:self._timeline.shape[0] - n]
    else:
      self.engine.interrupt(self._sid)

  def _feed(self, pcm: np.ndarray) -> None:
    if not pcm.size:
      return
    self._fed += pcm.shape[0]
    self._timeline = np.concatenate([self._timeline, pcm])
    if self._sid is None:
      self._early.append(pcm)
    else:
      self.engine.feed(self._sid, pcm)

  # ------------------------------------------------------------------------------------------
  # Frames out

  def __aiter__(self):
    return self._stream()

  async def _stream(self):
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def post(*item):
      loop.call_soon_threadsafe(events.put_nowait, item)

    self._sid = await asyncio.to_thread(
      self.engine.open, self.portrait, seed=self.seed, on_block=lambda b: post("block", b),
      on_error=lambda e: post("error", e), on_interrupt=lambda s, d: post("interrupted", s, d),
      max_pending=MAX_PENDING_BLOCKS)
    for pcm in self._early:
      self.engine.feed(self._sid, pcm)
    self._early.clear()
    try:
      while True:
        self._top_up()
        kind, *item = await events.get()
        if kind == "error":
          raise RuntimeError(f"the avatar's engine session failed: {type(item[0]).__name__}: {item[0]}") from item[0]
        if kind == "interrupted":
          self._cut(*item)
          continue
        block = item[0]
        for k, image in enumerate(block.frames):
          yield _video_frame(image)
          yield self._audio_frame(block.first_frame + k)
          self.frames_out = block.first_frame + k + 1
          while self._segment_ends and self._segment_ends[0] - self._dropped <= FRAME_SAMPLES * self.frames_out:
            self._segment_ends.pop(0)
            yield AudioSegmentEnd()
          self._top_up()
        self.engine.delivered(self._sid)
    finally:
      self.engine.cancel(self._sid)
      self._sid = None

  def _top_up(self) -> None:
    """Silence up to ``lead`` samples past the frames handed out (speech already there counts)."""
    missing = FRAME_SAMPLES * self.frames_out + self.lead - (self._fed - self._dropped)
    if missing > 0:
      self._feed(np.zeros(missing, np.int16))

  def _cut(self, sample: int, dropped: int) -> None:
    """An interrupt applied: the ``dropped`` samples passed on after the session's sample ``sample`` are gone."""
    lo = max(sample - self._timeline_start, 0)
    self._timeline = np.concatenate([self._timeline[:lo], self._timeline[lo + dropped:]])
    self._dropped += dropped

  def _audio_frame(self, i: int) -> rtc.AudioFrame:
    """The 16 kHz audio video frame ``i`` was made from; the timeline forgets what came before it."""
    lo = FRAME_SAMPLES * i - self._timeline_start
    pcm = self._timeline[lo:lo + FRAME_SAMPLES]
    pcm = np.pad(pcm, (0, FRAME_SAMPLES - pcm.shape[0]))  # never short: frames come only from audio passed on
    self._timeline = self._timeline[lo + FRAME_SAMPLES:]
    self._timeline_start = FRAME_SAMPLES * (i + 1)
    return rtc.AudioFrame(pcm.tobytes(), SAMPLE_RATE, 1, FRAME_SAMPLES)


def _samples(frame: rtc.AudioFrame) -> np.ndarray:
  """An AudioFrame's int16 samples, mono (the channels averaged)."""
  pcm = np.frombuffer(frame.data, np.int16).reshape(-1, frame.num_channels)
  return pcm[:, 0].copy() if frame.num_channels == 1 else pcm.mean(axis=1).round().astype(np.int16)


def _video_frame(image: np.ndarray) -> rtc.VideoFrame:
  """uint8 [H, W, 3] → an RGBA VideoFrame."""
  h, w, _ = image.shape
  rgba = np.concatenate([image, np.full((h, w, 1), 255, np.uint8)], axis=-1)
  return rtc.VideoFrame(w, h, rtc.VideoBufferType.RGBA, rgba.tobytes())


# ---------------------------------------------------------------------------------------------
# The worker


async def serve_room(room: rtc.Room, engine: Engine, portrait, *, seed: int = 0) -> None:
  """The avatar in a connected ``room``: the agent's audio from its data stream, video and audio published, until
  the agent leaves or the room disconnects."""
  video = AvatarVideoGenerator(engine, portrait, seed=seed)
  runner = AvatarRunner(room, audio_recv=DataStreamAudioReceiver(room), video_gen=video, options=video.options)
  stop = asyncio.Event()

  def left(participant) -> None:
    if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
      log.info("the agent %s left: the avatar stops", participant.identity)
      stop.set()

  room.on("participant_disconnected", left)
  room.on("disconnected", lambda *_: stop.set())
  await runner.start()
  try:
    await stop.wait()
  finally:
    await runner.aclose()


def run_worker(url: str, token: str, pipe, portrait, *, mode: str | None = None, seed: int = 0) -> None:
  """Join the room at ``url`` with ``token`` (an avatar identity's, from the agent's dispatcher) and be the avatar
  there until the agent leaves: one engine session of ``pipe`` in ``mode`` (the checkpoint's live mode when
  None). The engine compiles before the worker joins."""
  engine = Engine(pipe, batch_sizes=(1,), max_sessions=1, mode=mode).start()

  async def main() -> None:
    room = rtc.Room()
    try:
      await room.connect(url, token)
    except rtc.ConnectError as e:
      raise InputError(f"could not join a room there with this token ({e})", arg="url", value=url) from None
    log.info("avatar joined room %s (%s mode)", room.name, engine.mode)
    try:
      await serve_room(room, engine, portrait, seed=seed)
    finally:
      await room.disconnect()

  try:
    asyncio.run(main())
  finally:
    engine.stop(cancel=True)


__all__ = ["AvatarVideoGenerator", "FRAME_SAMPLES", "run_worker", "serve_room"]
