"""The HTTP and WebSocket front of the serving engine (issue #23, docs/serving.md): one app factory, no globals.

  app = create_app(engine, pipe, Limits(max_sessions=4))   # engine: read_jax.serve.engine.Engine, started
  uvicorn.run(app, host="127.0.0.1", port=8000)

* ``WS /v1/stream`` — a live session: a JSON ``start`` (portrait, sample rate, format), binary PCM16 chunks, then
  ``end`` or ``cancel``; the server answers ``ready``, a ``clip`` message + one binary message per block of
  frames, ``done``. Any problem closes *that* socket with one ``error`` message and a close code (1003 data the
  server cannot use, 1008 a protocol or limit violation, 1009 a message over the size limit, 1011 a server
  fault); other sessions never see it.
* ``POST /v1/videos`` — multipart portrait + audio → an mp4, through :meth:`ReadPipeline.write_video` as
  ``scripts/sample.py``, in a temp folder removed when the answer is built.
* ``GET /healthz``, ``GET /metrics`` (Prometheus text), ``GET /`` the page (``static/index.html``).

The event loop only moves bytes: generation runs on the engine's device worker thread, which hands each block
back through ``loop.call_soon_threadsafe``; the fMP4 encoding and POST /v1/videos run in worker threads
(``asyncio.to_thread``). No endpoint reads a path the client names: uploads go to fixed names in a temp folder.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import collections
import dataclasses
import io
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
import warnings

import numpy as np
from fastapi import FastAPI, File, Form, UploadFile, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from read_jax import audio as audio_lib
from read_jax import media
from read_jax.errors import InputError
from read_jax.pipeline import ReadPipeline
from read_jax.serve import fmp4
from read_jax.serve.engine import AdmissionError, Engine

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
SAMPLE_RATE = audio_lib.SAMPLE_RATE  # the only rate accepted: PCM16 LE mono at 16 kHz
FORMATS = ("raw", "fmp4")

# Close codes (RFC 6455 §7.4.1), the four the protocol uses.
UNSUPPORTED = 1003  # data the server cannot use: a binary start, an unreadable portrait, another sample rate
POLICY = 1008  # a protocol or limit violation: bad fields, audio before start, too long, idle, refused
TOO_BIG = 1009  # a message over Limits.max_message_bytes
INTERNAL = 1011  # the server failed (a bug, a device error)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)  # seconds


@dataclasses.dataclass(frozen=True)
class Limits:
  """What one client may ask of the server; every limit closes only the session that passes it."""

  max_sessions: int = 4  # live sessions at once (the engine may refuse earlier: admission by step time)
  max_message_bytes: int = 8 << 20  # one WebSocket message (the start message carries the portrait)
  max_session_seconds: float = 600.0  # audio per session (and per POST /v1/videos), seconds
  idle_timeout_seconds: float = 10.0  # no message for this long before "end" closes the session
  max_upload_bytes: int = 32 << 20  # each file of POST /v1/videos


class ProtocolError(Exception):
  """A session's fault, closing it with ``code`` and ``message`` (the one error the client sees)."""

  def __init__(self, code: int, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


# ---------------------------------------------------------------------------------------------
# Metrics


class Metrics:
  """The one registry of the numbers a client sees; ``/metrics`` renders it with the engine's stats."""

  def __init__(self):
    self._lock = threading.Lock()
    self.sessions_active = 0
    self.sessions_total = 0
    self.closes = collections.Counter()  # close code → sessions
    self.blocks_total = 0
    self.frames_total = 0
    self.videos_total = 0
    self.video_errors_total = 0
    self.block_latency = [0] * (len(LATENCY_BUCKETS) + 1)
    self.block_latency_sum = 0.0
    self.first_frame = [0] * (len(LATENCY_BUCKETS) + 1)
    self.first_frame_sum = 0.0
    self.rtf_last = 0.0

  def session(self, delta: int) -> None:
    with self._lock:
      self.sessions_active += delta
      self.sessions_total += max(delta, 0)

  def closed(self, code: int) -> None:
    with self._lock:
      self.closes[code] += 1

  def video(self, ok: bool) -> None:
    with self._lock:
      if ok:
        self.videos_total += 1
      else:
        self.video_errors_total += 1

  def block(self, frames: int, latency: float | None, first: float | None) -> None:
    with self._lock:
      self.blocks_total += 1
      self.frames_total += frames
      if latency is not None:
        self.block_latency[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
        self.block_latency_sum += latency
      if first is not None:
        self.first_frame[bisect.bisect_left(LATENCY_BUCKETS, first)] += 1
        self.first_frame_sum += first

  def render(self, engine_stats: dict) -> str:
    lines = []

    def metric(name, kind, help_text, samples):
      lines.append(f"# HELP {name} {help_text}")
      lines.append(f"# TYPE {name} {kind}")
      for labels, value in samples:
        lines.append(f"{name}{labels} {_number(value)}")

    def histogram(name, help_text, counts, total):
      cumulative, samples = 0, []
      for edge, count in zip(LATENCY_BUCKETS + (math.inf,), counts):
        cumulative += count
        samples.append((f'{{le="{"+Inf" if edge == math.inf else edge}"}}', cumulative))
      lines.append(f"# HELP {name} {help_text}")
      lines.append(f"# TYPE {name} histogram")
      lines.extend(f"{name}_bucket{labels} {value}" for labels, value in samples)
      lines.append(f"{name}_sum {_number(total)}")
      lines.append(f"{name}_count {cumulative}")

    with self._lock:
      metric("read_sessions_active", "gauge", "Live WebSocket sessions now.", [("", self.sessions_active)])
      metric("read_sessions_total", "counter", "Live sessions started.", [("", self.sessions_total)])
      metric("read_sessions_closed_total", "counter", "Sessions closed, by WebSocket close code.",
             [(f'{{code="{code}"}}', n) for code, n in sorted(self.closes.items())])
      metric("read_blocks_total", "counter", "Frame blocks sent.", [("", self.blocks_total)])
      metric("read_frames_total", "counter", "Video frames sent.", [("", self.frames_total)])
      metric("read_videos_total", "counter", "POST /v1/videos answered with a video.", [("", self.videos_total)])
      metric("read_video_errors_total", "counter", "POST /v1/videos refused or failed.",
             [("", self.video_errors_total)])
      histogram("read_block_latency_seconds",
                "From the arrival of the audio of a block's last frame to the block being sent.",
                self.block_latency, self.block_latency_sum)
      histogram("read_first_frame_latency_seconds", "From a session's first audio to its first frame sent.",
                self.first_frame, self.first_frame_sum)
      metric("read_realtime_factor", "gauge",
             "Last finished session: wall seconds from first audio to done over video seconds.",
             [("", self.rtf_last)])
    for key, value in sorted(engine_stats.items()):
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        continue
      name = "read_engine_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)
      metric(name, "gauge", f"engine.stats()[{key!r}].", [("", value)])
    return "\n".join(lines) + "\n"


def _number(value) -> str:
  return repr(float(value)) if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------------
# Validation at the edge


@dataclasses.dataclass(frozen=True)
class Start:
  """The client's first message, checked."""

  portrait: np.ndarray | None  # uint8 [H, W, 3], None: the server's default portrait
  format: str
  steps: int | None
  seed: int


def decode_portrait(data: bytes, what: str = "portrait") -> np.ndarray:
  """Image file bytes (PNG, JPEG, WebP, ...) → uint8 [H, W, 3]; raises MediaError (the client's fault)."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        if width * height > media.MAX_IMAGE_PIXELS or min(width, height) < media.MIN_IMAGE_SIDE:
          raise media.MediaError(f"{what}: {width}×{height} pixels is outside "
                                 f"{media.MIN_IMAGE_SIDE} px … {media.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels")
        img = img.convert("RGB")  # alpha dropped: the page sends opaque photos
        return np.asarray(img, np.uint8)
  except media.MediaError:
    raise
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
          Image.DecompressionBombWarning) as e:
    raise media.MediaError(f"{what}: not a readable image ({e})") from None


def parse_start(text: str, has_default_portrait: bool) -> Start:
  """The ``start`` message → :class:`Start`, or a ProtocolError with the field and the problem."""
  try:
    msg = json.loads(text)
  except json.JSONDecodeError as e:
    raise ProtocolError(POLICY, f"start: not JSON ({e})") from None
  if not isinstance(msg, dict) or msg.get("type") != "start":
    got = msg.get("type") if isinstance(msg, dict) else type(msg).__name__
    raise ProtocolError(POLICY, f"the first message must be {{\"type\": \"start\", ...}}, got type {got!r}")
  unknown = sorted(set(msg) - {"type", "portrait", "sample_rate", "format", "steps", "seed"})
  if unknown:
    raise ProtocolError(POLICY, f"start: unknown fields {unknown}")
  rate = msg.get("sample_rate", SAMPLE_RATE)
  if rate != SAMPLE_RATE:
    raise ProtocolError(UNSUPPORTED, f"start.sample_rate: only {SAMPLE_RATE} Hz PCM16 mono is accepted, got {rate!r}")
  fmt = msg.get("format", "raw")
  if fmt not in FORMATS:
    raise ProtocolError(UNSUPPORTED, f"start.format: must be one of {list(FORMATS)}, got {fmt!r}")
  steps, seed = msg.get("steps"), msg.get("seed", 0)
  if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
    raise ProtocolError(POLICY, f"start.steps: need a positive integer or null, got {steps!r}")
  if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
    raise ProtocolError(POLICY, f"start.seed: need an integer in [0, 2^31), got {seed!r}")
  portrait = msg.get("portrait")
  if portrait is None:
    if not has_default_portrait:
      raise ProtocolError(POLICY, "start.portrait: required (a base64 image)")
    return Start(None, fmt, steps, seed)
  if not isinstance(portrait, str):
    raise ProtocolError(POLICY, "start.portrait: need a base64 string")
  if portrait.startswith("data:"):  # a data URL as a browser's FileReader gives it
    portrait = portrait.partition(",")[2]
  try:
    data = base64.b64decode(portrait, validate=True)
  except (binascii.Error, ValueError) as e:
    raise ProtocolError(UNSUPPORTED, f"start.portrait: not base64 ({e})") from None
  try:
    return Start(decode_portrait(data, "start.portrait"), fmt, steps, seed)
  except media.MediaError as e:
    raise ProtocolError(UNSUPPORTED, str(e)) from None


# ---------------------------------------------------------------------------------------------
# One live session


class _Session:
  """The state of one WebSocket between the reader (client → engine) and the writer (engine → client)."""

  def __init__(self, ws: WebSocket, fps: int):
    self.ws = ws
    self.fps = fps
    self.events: asyncio.Queue = asyncio.Queue()
    self.failure: ProtocolError | None = None
    self.samples = 0  # PCM samples received
    self.arrivals: collections.deque = collections.deque()  # (samples received so far, time)
    self.first_audio: float | None = None
    self.ended_at: float | None = None
    self.pcm = bytearray()  # fmp4 only: PCM16 from sample pcm_start on, for each block's audio track
    self.pcm_start = 0
    self.first_sent = False
    self.frames_sent = 0

  def fail(self, code: int, message: str) -> None:
    if self.failure is None:
      self.failure = ProtocolError(code, message)
    self.events.put_nowait(("wake",))

  def audio_time(self, frame_end: int) -> float | None:
    """When the audio up to video frame ``frame_end`` (exclusive) had arrived (the end, for padding)."""
    need = frame_end * SAMPLE_RATE // self.fps
    while self.arrivals and self.arrivals[0][0] < need:
      if len(self.arrivals) == 1:
        break
      self.arrivals.popleft()
    if self.arrivals and self.arrivals[0][0] >= need:
      return self.arrivals[0][1]
    return self.ended_at

  def block_pcm(self, first: int, n: int) -> np.ndarray:
    start, stop = first * SAMPLE_RATE // self.fps, (first + n) * SAMPLE_RATE // self.fps
    lo, hi = 2 * max(start - self.pcm_start, 0), 2 * max(stop - self.pcm_start, 0)
    pcm = np.frombuffer(bytes(self.pcm[lo:hi]), "<i2")
    del self.pcm[:hi]
    self.pcm_start = max(stop, self.pcm_start)
    return pcm


async def _send_error(ws: WebSocket, code: int, message: str) -> None:
  if ws.client_state != WebSocketState.CONNECTED:
    return
  try:
    await ws.send_text(json.dumps({"type": "error", "message": message, "code": code}))
    await ws.close(code=code, reason=message.encode()[:120].decode(errors="ignore"))
  except (WebSocketDisconnect, RuntimeError, OSError):
    pass


# ---------------------------------------------------------------------------------------------
# The app


def create_app(engine: Engine, pipe: ReadPipeline, limits: Limits = Limits(), *,
               default_portrait: bytes | None = None) -> FastAPI:
  """The FastAPI app around a started ``engine`` (live sessions) and its ``pipe`` (POST /v1/videos).

  ``default_portrait``: image bytes used when a ``start`` has no portrait, and served at ``/v1/portrait`` for
  the page (``scripts/serve.py`` passes the demo reference)."""
  app = FastAPI(title="read_jax", docs_url=None, redoc_url=None)
  metrics = Metrics()
  app.state.metrics = metrics
  app.state.limits = limits
  fps = pipe.config.fps
  size = pipe.config.resolution
  default_image = decode_portrait(default_portrait, "default portrait") if default_portrait is not None else None
  video_lock = threading.Lock()  # one POST /v1/videos generation at a time beside the live sessions
  live = {"count": 0}

  @app.get("/", response_class=HTMLResponse)
  async def index():
    with open(os.path.join(STATIC, "index.html"), encoding="utf-8") as f:
      return HTMLResponse(f.read())

  app.mount("/static", StaticFiles(directory=STATIC), name="static")

  @app.get("/v1/portrait")
  async def portrait():
    if default_portrait is None:
      return JSONResponse({"error": "no default portrait on this server"}, status_code=404)
    return Response(default_portrait, media_type="image/png")

  @app.get("/healthz")
  async def healthz():
    stats = engine.stats()
    ok = bool(stats.get("running", True))
    body = {"status": "ok" if ok else "stopped", "sessions": live["count"], "max_sessions": limits.max_sessions,
            "width": size, "height": size, "fps": fps, "formats": list(FORMATS), "mime": fmp4.MIME}
    return JSONResponse(body, status_code=200 if ok else 503)

  @app.get("/metrics", response_class=PlainTextResponse)
  async def metrics_text():
    return PlainTextResponse(metrics.render(engine.stats()), media_type="text/plain; version=0.0.4")

  # ------------------------------------------------------------------------------------------
  # POST /v1/videos

  @app.post("/v1/videos")
  async def videos(portrait: UploadFile = File(...), audio: UploadFile = File(...),
                   steps: int | None = Form(None), seed: int = Form(0)):
    tmp = tempfile.mkdtemp(prefix="read_jax_video_")
    try:
      paths = {}
      for name, upload in (("portrait", portrait), ("audio", audio)):
        data = await upload.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
          raise InputError(f"{name}: over the {limits.max_upload_bytes} byte upload limit")
        if not data:
          raise InputError(f"{name}: empty upload")
        ext = os.path.splitext(upload.filename or "")[1].lower()
        ext = ext if re.fullmatch(r"\.[a-z0-9]{1,5}", ext) else ""  # a hint for ffmpeg; never a client path
        paths[name] = os.path.join(tmp, name + ext)
        with open(paths[name], "wb") as f:
          f.write(data)
      if steps is not None and steps < 1:
        raise InputError(f"steps: need a positive integer, got {steps}")
      out = os.path.join(tmp, "out.mp4")
      body = await asyncio.to_thread(_write_video, pipe, video_lock, paths, out, limits, steps, seed)
    except InputError as e:
      metrics.video(ok=False)
      return JSONResponse({"error": str(e).replace(tmp + os.sep, "")}, status_code=400)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
    metrics.video(ok=True)
    return Response(body, media_type="video/mp4")

  # ------------------------------------------------------------------------------------------
  # WS /v1/stream

  @app.websocket("/v1/stream")
  async def stream(ws: WebSocket):
    await ws.accept()
    loop = asyncio.get_running_loop()
    s = _Session(ws, fps)
    sid, tmp, code = None, None, 1000
    counted = False
    try:
      try:
        msg = await asyncio.wait_for(ws.receive(), limits.idle_timeout_seconds)
      except asyncio.TimeoutError:
        raise ProtocolError(POLICY, f"idle: no start message within {limits.idle_timeout_seconds:g} s") from None
      if msg["type"] == "websocket.disconnect":
        return
      _check_size(msg, limits)
      if msg.get("text") is None:
        raise ProtocolError(UNSUPPORTED, "the first message must be the JSON start message, got binary data")
      start = parse_start(msg["text"], default_image is not None)
      if live["count"] >= limits.max_sessions:
        raise ProtocolError(POLICY, f"busy: {limits.max_sessions} sessions already running (max_sessions); "
                                    "try again later")
      live["count"] += 1
      counted = True
      metrics.session(+1)

      def on_block(block):
        loop.call_soon_threadsafe(s.events.put_nowait, ("block", block))

      def on_done(total):
        loop.call_soon_threadsafe(s.events.put_nowait, ("done", total))

      def on_error(exc):
        loop.call_soon_threadsafe(s.events.put_nowait, ("error", exc))

      portrait_image = start.portrait if start.portrait is not None else default_image
      try:
        sid = await asyncio.to_thread(engine.open, portrait_image, seed=start.seed, steps=start.steps,
                                      on_block=on_block, on_done=on_done, on_error=on_error)
      except AdmissionError as e:
        raise ProtocolError(POLICY, f"refused: {e}") from None
      except InputError as e:
        raise ProtocolError(UNSUPPORTED, f"start: {e}") from None
      encoder = None
      if start.format == "fmp4":
        tmp = tempfile.mkdtemp(prefix="read_jax_fmp4_")
        encoder = fmp4.FragmentEncoder(fps, tmp)
      ready = {"type": "ready", "session": str(sid), "width": size, "height": size, "fps": fps,
               "format": start.format, "sample_rate": SAMPLE_RATE}
      if encoder is not None:
        ready["mime"] = fmp4.MIME
      await ws.send_text(json.dumps(ready))

      reader = asyncio.create_task(_read(ws, s, engine, sid, limits, start.format == "fmp4"))
      try:
        code = await _write(ws, s, encoder, metrics)
      finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    except ProtocolError as e:
      code = e.code
      await _send_error(ws, e.code, e.message)
    except WebSocketDisconnect:
      code = 1001
    except Exception as e:  # a bug or a device error: this session only
      code = INTERNAL
      await _send_error(ws, INTERNAL, f"internal error: {type(e).__name__}: {e}")
    finally:
      if sid is not None and code != 1000:
        engine.cancel(sid)
      if counted:
        live["count"] -= 1
        metrics.session(-1)
        if s.first_audio is not None and s.frames_sent and code == 1000:
          metrics.rtf_last = (time.perf_counter() - s.first_audio) / (s.frames_sent / fps)
      metrics.closed(code)
      if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)

  return app


def _check_size(msg: dict, limits: Limits) -> None:
  data = msg.get("bytes") if msg.get("bytes") is not None else msg.get("text")
  if data is not None and len(data) > limits.max_message_bytes:
    raise ProtocolError(TOO_BIG, f"message of {len(data)} bytes is over the {limits.max_message_bytes} byte limit")


async def _read(ws: WebSocket, s: _Session, engine: Engine, sid, limits: Limits, keep_pcm: bool) -> None:
  """Client → engine: PCM chunks, then end or cancel; a violation fails the session (the writer closes it)."""
  max_samples = int(limits.max_session_seconds * SAMPLE_RATE)
  ended = False
  try:
    while True:
      timeout = None if ended else limits.idle_timeout_seconds
      try:
        msg = await asyncio.wait_for(ws.receive(), timeout)
      except asyncio.TimeoutError:
        return s.fail(POLICY, f"idle: no audio for {limits.idle_timeout_seconds:g} s (send {{\"type\": \"end\"}} "
                              "to finish)")
      if msg["type"] == "websocket.disconnect":
        return s.fail(1001, "client went away")
      _check_size(msg, limits)
      if msg.get("bytes") is not None:
        data = msg["bytes"]
        if ended:
          return s.fail(POLICY, "audio after end")
        if len(data) % 2:
          return s.fail(UNSUPPORTED, f"audio chunk of {len(data)} bytes: PCM16 needs an even byte count")
        if s.samples + len(data) // 2 > max_samples:
          return s.fail(POLICY, f"session over the {limits.max_session_seconds:g} s limit (max_session_seconds)")
        pcm = np.frombuffer(data, "<i2")
        now = time.perf_counter()
        if s.first_audio is None:
          s.first_audio = now
        s.samples += pcm.shape[0]
        s.arrivals.append((s.samples, now))
        if keep_pcm:
          s.pcm += data
        engine.feed(sid, pcm)
        continue
      try:
        message = json.loads(msg["text"])
        kind = message.get("type") if isinstance(message, dict) else None
      except json.JSONDecodeError:
        return s.fail(POLICY, "a text message that is not JSON")
      if kind == "end" and not ended:
        ended = True
        s.ended_at = time.perf_counter()
        engine.end(sid)
      elif kind == "cancel":
        engine.cancel(sid)
        s.events.put_nowait(("cancelled",))
        return
      else:
        return s.fail(POLICY, f"unexpected message type {kind!r} (expected binary PCM, end or cancel)")
  except ProtocolError as e:
    s.fail(e.code, e.message)
  except WebSocketDisconnect:
    s.fail(1001, "client went away")


async def _write(ws: WebSocket, s: _Session, encoder, metrics: Metrics) -> int:
  """Engine → client until done; returns the close code (1000 when the session finished)."""
  while True:
    event = await s.events.get()
    if s.failure is not None:
      if s.failure.code == 1001:
        return 1001
      raise s.failure
    kind = event[0]
    if kind == "wake":
      continue
    if kind == "cancelled":
      await ws.send_text(json.dumps({"type": "done", "frames": s.frames_sent, "cancelled": True}))
      await ws.close(1000)
      return 1000
    if kind == "error":
      exc = event[1]
      if isinstance(exc, InputError):
        raise ProtocolError(UNSUPPORTED, str(exc))
      raise ProtocolError(INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
    if kind == "done":
      await ws.send_text(json.dumps({"type": "done", "frames": int(event[1])}))
      await ws.close(1000)
      return 1000
    block = event[1]
    frames = np.ascontiguousarray(block.frames, np.uint8)  # [n, H, W, 3]
    n = frames.shape[0]
    if encoder is not None:
      payload = await asyncio.to_thread(encoder.encode, frames, s.block_pcm(block.first_frame, n), block.first_frame)
    else:
      payload = frames.tobytes()
    heard = s.audio_time(block.first_frame + n)
    latency = None if heard is None else max(time.perf_counter() - heard, 0.0)
    first = None
    if not s.first_sent and s.first_audio is not None:
      first, s.first_sent = time.perf_counter() - s.first_audio, True
    await ws.send_text(json.dumps({"type": "clip", "index": int(block.index), "first_frame": int(block.first_frame),
                                   "frames": n, "bytes": len(payload),
                                   "latency": None if latency is None else round(latency, 4)}))
    await ws.send_bytes(payload)
    s.frames_sent += n
    metrics.block(n, latency, first)


def _write_video(pipe: ReadPipeline, lock: threading.Lock, paths: dict, out: str, limits: Limits, steps, seed) -> bytes:
  """POST /v1/videos in a worker thread: the checks and the generation of scripts/sample.py."""
  media.check_image(paths["portrait"])
  info = audio_lib.check_audio_file(paths["audio"])
  if info.seconds is not None and info.seconds > limits.max_session_seconds:
    raise InputError(f"audio: {info.seconds:.1f} s is over the {limits.max_session_seconds:g} s limit")
  with lock:
    pipe.write_video(paths["portrait"], paths["audio"], out, steps=steps, seed=seed)
  with open(out, "rb") as f:
    return f.read()
