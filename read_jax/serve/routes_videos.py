"""``POST /v1/videos``: multipart ``portrait`` + ``audio`` [+ ``steps``, ``seed``] → an mp4.

Admission first (``max_videos`` in flight, else 429; draining, 503), then the body streamed with its cap (413,
before anything is kept) and its time limit (408), then the work in the app's own pool (``videos.render_video``)
under a deadline (503), stopped when the client disconnects. The admission slot is held until the worker itself ends.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
import time

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from read_jax.errors import InputError
from read_jax.serve import protocol as proto
from read_jax.serve.engine import AdmissionError
from read_jax.serve.logs import event
from read_jax.serve.state import ServeState
from read_jax.serve.uploads import Form, UploadError, fixed_paths, read_form
from read_jax.serve.videos import VideoJob, VideoStopped, render_video

router = APIRouter()
RETRY_AFTER = "5"  # seconds, on 429 and 503


class _Answer(Exception):
  """Stop the request with this HTTP answer."""

  def __init__(self, status: int, outcome: str, message: str):
    super().__init__(message)
    self.status, self.outcome, self.message = status, outcome, message


@router.post("/v1/videos")
async def videos(request: Request):
  state: ServeState = request.app.state.serve
  limits, metrics = state.limits, state.metrics
  request_id = request.scope.get("state", {}).get("request_id", "")
  client = f"{request.client.host}:{request.client.port}" if request.client else "?"
  if state.draining:
    metrics.refused.labels("draining").inc()
    return _error(503, "draining: this server is shutting down; send it to another replica")
  if state.videos >= limits.max_videos:
    metrics.refused.labels("videos_busy").inc()
    return _error(429, f"busy: {limits.max_videos} videos already in progress (max_videos); try again later")
  length = request.headers.get("content-length")
  if length is not None and (not length.isdigit() or int(length) > limits.max_body_bytes):
    metrics.refused.labels("too_big").inc()
    return _error(413, f"the body is over the {limits.max_body_bytes} byte limit (max_upload_bytes per file)")

  state.videos += 1
  metrics.videos_in_flight.inc()
  t0 = time.perf_counter()
  loop = asyncio.get_running_loop()
  released = False

  def release() -> None:
    nonlocal released
    if not released:
      released = True
      state.videos -= 1
      metrics.videos_in_flight.dec()

  abandoned = threading.Event()  # the handler answered without the file: the folder goes when the worker ends

  def worker_ended(_) -> None:  # in the worker's thread; the slot is freed on the loop
    try:
      loop.call_soon_threadsafe(release)
    except RuntimeError:  # the loop is closed: nothing is admitted any more
      pass
    if abandoned.is_set():
      shutil.rmtree(tmp, ignore_errors=True)

  tmp = tempfile.mkdtemp(prefix="read_jax_video_")
  future, with_file, frames = None, False, 0
  outcome, status, message = "error", 500, "the request ended early (a server fault or shutdown)"
  try:
    future = await _run(request, state, tmp)
    future.add_done_callback(worker_ended)
    frames = await _wait(request, state, future)
    with_file = True
    outcome, status, message = "ok", 200, ""
    return FileResponse(f"{tmp}/out.mp4", media_type="video/mp4", filename="read_jax.mp4",
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))
  except _Answer as a:
    outcome, status, message = a.outcome, a.status, a.message
    return _error(a.status, a.message)
  finally:
    if future is None:  # nothing was submitted: free everything now
      release()
    if not with_file:
      abandoned.set()
      if future is not None:
        future.job.stop("the request ended")  # a no-op for a worker that is done
      if future is None or future.done():
        shutil.rmtree(tmp, ignore_errors=True)
    metrics.videos.labels(outcome).inc()
    metrics.video_seconds.observe(time.perf_counter() - t0)
    if outcome == "error":
      metrics.errors.labels("video").inc()
    event(state.log, "video", level=logging.INFO if status < 400 else logging.WARNING, request=request_id,
          client=client, outcome=outcome, status=status, reason=message, frames=frames,
          seconds=round(time.perf_counter() - t0, 3))


async def _run(request: Request, state: ServeState, tmp: str):
  """Read the body (streamed, capped) and submit the work; the worker's future."""
  limits = state.limits
  paths = fixed_paths(tmp, ("audio",))
  form = Form({"portrait": None, "audio": paths["audio"]}, limits.max_upload_bytes)
  try:
    async with asyncio.timeout(limits.upload_timeout_seconds):  # a body sent a byte at a time holds a slot
      await read_form(request.stream(), request.headers.get("content-type", ""), form, limits.max_body_bytes)
  except TimeoutError:
    raise _Answer(408, "too_slow", f"the upload took over {limits.upload_timeout_seconds:g} s "
                                   "(upload_timeout_seconds)") from None
  except UploadError as e:
    raise _Answer(e.status, "too_big" if e.status == 413 else "bad_request", str(e)) from None
  except ClientDisconnect:
    raise _Answer(400, "cancelled", "the client went away during the upload") from None
  try:
    for name in ("portrait", "audio"):
      if not form.sizes.get(name):
        raise UploadError(f"{name}: missing or empty (multipart fields portrait and audio)")
    steps, seed = _steps(form.field("steps"), state.engine.steps), _seed(form.field("seed"))
  except UploadError as e:
    raise _Answer(400, "bad_request", str(e)) from None
  job = VideoJob(time.monotonic() + limits.video_deadline_seconds)
  future = state.video_pool.submit(render_video, state.engine, limits, job, bytes(form.data["portrait"]),
                                   paths["audio"], tmp + "/out.mp4", steps=steps, seed=seed, fps=state.fps)
  future.job = job
  return future


async def _wait(request: Request, state: ServeState, future) -> int:
  """The worker's frame count, or an _Answer; the client leaving or the deadline stops the worker."""
  job = future.job
  work = asyncio.wrap_future(future)
  gone = asyncio.create_task(_disconnected(request))
  try:
    done, _ = await asyncio.wait({work, gone}, timeout=max(job.deadline - time.monotonic(), 0.0),
                                 return_when=asyncio.FIRST_COMPLETED)
  finally:
    gone.cancel()
  if work not in done:
    job.stop("cancelled" if gone in done else "deadline")
    if gone in done:
      raise _Answer(400, "cancelled", "the client went away")
    raise _Answer(503, "deadline", f"deadline: the video took over {state.limits.video_deadline_seconds:g} s "
                                   "(video_deadline_seconds)")
  try:
    return work.result()
  except VideoStopped as e:
    raise _Answer(503, "deadline", f"deadline: {e}") from None
  except AdmissionError as e:
    state.metrics.refused.labels("capacity").inc()
    raise _Answer(429, "refused", f"refused: {e}") from None
  except InputError as e:  # UploadError, and the engine's AudioError for the session
    raise _Answer(400, "bad_request", str(e)) from None
  except Exception as e:  # a server fault: this request only
    event(state.log, "video.error", level=logging.ERROR, exc_info=e)
    raise _Answer(500, "error", f"internal error: {type(e).__name__}") from None


async def _disconnected(request: Request) -> None:
  """Returns when the client has gone (the body is already read, so the next ASGI message is the disconnect)."""
  while True:
    message = await request.receive()
    if message["type"] == "http.disconnect":
      return
    await asyncio.sleep(0.05)


def _steps(text: str | None, server_steps: int) -> int | None:
  if text in (None, ""):
    return None
  try:
    steps = int(text)
  except ValueError:
    raise UploadError(f"steps: need an integer, got {text[:20]!r}") from None
  if steps != server_steps:
    raise UploadError(f"steps: this server samples {server_steps} steps per clip (omit steps or send "
                      f"{server_steps}), got {steps}")
  return steps


def _seed(text: str | None) -> int:
  if text in (None, ""):
    return 0
  try:
    seed = int(text)
  except ValueError:
    raise UploadError(f"seed: need an integer, got {text[:20]!r}") from None
  if not 0 <= seed < proto.MAX_SEED:
    raise UploadError(f"seed: need an integer in [0, 2^31), got {seed}")
  return seed


def _error(status: int, message: str) -> JSONResponse:
  headers = {"Retry-After": RETRY_AFTER} if status in (429, 503) else None
  return JSONResponse({"error": message}, status_code=status, headers=headers)
