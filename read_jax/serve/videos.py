"""``POST /v1/videos`` in its worker thread: the uploaded portrait and audio through the engine into an mp4.

The video is made by an engine session fed the whole file, so it uses the programs compiled at start-up (no
new compilation for any length or ``steps``), counts in the engine's admission beside the live sessions, and
gets the frames a live session of the same audio gets (in the engine's mode, clip by default: the frames of
``scripts/sample.py`` where the checkpoint's ``speech_window`` is a live policy, as the demo's is). The audio
goes in a unit or two ahead of the frames written, so one long file never holds a lane for long, and the engine
pauses the session while the writer is behind (``max_pending``). A stop (the client left, the deadline) is
seen between blocks.
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np

from read_jax import audio as audio_lib
from read_jax import media
from read_jax.serve.engine import Engine
from read_jax.serve.limits import Limits
from read_jax.serve.uploads import UploadError, decode_audio, decode_portrait

POLL_SECONDS = 0.1  # how often a waiting worker looks at its stop flag
CLIPS_AHEAD = 2  # clips of speech fed before the frames written


class VideoStopped(Exception):
  """The request was stopped from outside (``VideoJob.stop``); the message says why."""


class VideoJob:
  """What the request handler and the worker share: the stop flag and its reason."""

  def __init__(self, deadline: float):
    self.deadline = deadline  # time.monotonic() by which the answer must be ready
    self._stop = threading.Event()
    self.reason = ""

  def stop(self, reason: str) -> None:
    self.reason = reason
    self._stop.set()

  def check(self) -> None:
    if self._stop.is_set():
      raise VideoStopped(self.reason)
    if time.monotonic() > self.deadline:
      raise VideoStopped("deadline")


def render_video(engine: Engine, limits: Limits, job: VideoJob, portrait: bytes, audio_path: str, out_path: str, *,
                 steps: int | None, seed: int, fps: int) -> int:
  """Decode, generate and write ``out_path``; the number of frames. Raises UploadError (the client's files),
  AdmissionError (the engine is full), VideoStopped, or a server fault."""
  try:
    image = decode_portrait(portrait, "portrait", limits.max_portrait_pixels)
  except media.MediaError as e:
    raise UploadError(str(e)) from None
  sr = audio_lib.SAMPLE_RATE
  wave = decode_audio(audio_path, "audio", limits.max_session_seconds, sr // fps)  # [samples] float32
  job.check()
  events: queue.Queue = queue.Queue()
  sid = engine.open(image, seed=seed, steps=steps, on_block=lambda b: events.put(("block", b)),
                    on_done=lambda n: events.put(("done", n)), on_error=lambda e: events.put(("error", e)),
                    max_pending=limits.max_pending_blocks)
  try:
    step = max(int(engine.unit_duration * sr), 1)  # samples of one unit of speech
    fed = 0

    def feed(upto: int) -> None:
      nonlocal fed
      upto = min(upto, wave.size)
      while fed < upto:
        engine.feed(sid, wave[fed:fed + step])
        fed += min(step, wave.size - fed)
        if fed == wave.size:
          engine.end(sid)

    feed(CLIPS_AHEAD * step)
    frames = 0
    with media.VideoWriter(out_path, fps=fps, audio=(wave, sr)) as writer:
      while True:
        job.check()
        try:
          kind, value = events.get(timeout=POLL_SECONDS)
        except queue.Empty:
          continue
        if kind == "error":
          raise value
        if kind == "done":
          break
        block_frames = np.asarray(value.frames, np.uint8)  # [n, H, W, 3]
        writer.write(block_frames)
        frames += block_frames.shape[0]
        engine.delivered(sid)
        feed(frames * sr // fps + CLIPS_AHEAD * step)
    return frames
  finally:
    engine.cancel(sid)
