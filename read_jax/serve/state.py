"""What the routes of one app share (``app.state.serve``): the engine, the limits, the metrics, the thread pools
and the admission counts. Made by ``create_app``; nothing here is module-global."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time

from read_jax.pipeline import ReadPipeline
from read_jax.serve.engine import Engine
from read_jax.serve.limits import Limits
from read_jax.serve.logs import LOGGER
from read_jax.serve.metrics import ServeMetrics
from read_jax.serve.security import Security


@dataclasses.dataclass
class ServeState:
  """One app's shared state. ``session_pool``: portrait decoding, ``engine.open`` and fMP4 encoding of live
  sessions (the event loop only moves bytes); ``video_pool``: POST /v1/videos, ``limits.max_videos`` workers,
  so videos never take the live sessions' threads."""

  engine: Engine
  pipe: ReadPipeline
  limits: Limits
  security: Security
  default_portrait: bytes | None
  default_image: object  # uint8 [H, W, 3] of default_portrait, or None
  metrics: ServeMetrics = None
  log: logging.Logger = dataclasses.field(default_factory=lambda: logging.getLogger(LOGGER))
  session_pool: concurrent.futures.ThreadPoolExecutor = None
  video_pool: concurrent.futures.ThreadPoolExecutor = None
  sessions: dict = dataclasses.field(default_factory=dict)  # live session id → its StreamSession
  live: int = 0  # live sessions admitted and not yet closed
  videos: int = 0  # POST /v1/videos admitted and not yet finished (their worker included)
  draining_since: float | None = None  # monotonic time SIGTERM arrived: nothing new is admitted

  @property
  def fps(self) -> int:
    return self.pipe.config.fps

  @property
  def size(self) -> int:
    return self.pipe.config.resolution

  @property
  def draining(self) -> bool:
    return self.draining_since is not None

  def drain(self) -> None:
    """Stop admitting sessions and videos (readiness goes 503); open ones go on."""
    if self.draining_since is None:
      self.draining_since = time.monotonic()

  def busy(self) -> int:
    """Live sessions and videos still running (what a drain waits for)."""
    return self.live + self.videos

  def shutdown_sessions(self, message: str) -> None:
    """Close every open live session now (the drain's time is over): each gets one error and close 1012."""
    for session in list(self.sessions.values()):
      session.shut_down(message)

  def app_gauges(self) -> dict:
    return {"read_send_queue_blocks": ("Frame blocks generated and not yet sent, over every live session.",
                                       sum(s.queued_blocks() for s in self.sessions.values())),
            "read_videos_admitted": ("POST /v1/videos holding an admission slot (their workers included).",
                                     self.videos),
            "read_draining": ("1 while the server drains after SIGTERM.", int(self.draining))}

  def close(self) -> None:
    """The pools' threads end (at the app's shutdown)."""
    for pool in (self.session_pool, self.video_pool):
      if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


async def run_in(pool: concurrent.futures.Executor, fn, *args, orphan=None):
  """``fn(*args)`` in ``pool``. If the caller is cancelled while ``fn`` runs, ``orphan(result)`` gets its result
  when it ends (e.g. cancel an engine session that was opened for a client that has gone)."""
  future = pool.submit(fn, *args)
  try:
    return await asyncio.wrap_future(future)
  except asyncio.CancelledError:
    if orphan is not None:
      future.add_done_callback(lambda f: f.cancelled() or f.exception() is not None or orphan(f.result()))
    raise
