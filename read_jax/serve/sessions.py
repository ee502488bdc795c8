"""One live session over ``WS /v1/stream``: admission, the reader (client → engine) and the writer (engine →
client), and the one place its end is accounted for.

Every bound of a session is here: the start within ``idle_timeout_seconds``; then audio or a control message
at least every ``idle_timeout_seconds`` (empty messages do not count); the whole session within
``max_session_wall_seconds``; at most ``max_session_seconds`` of audio; messages read no faster than
``max_messages_per_second``; at most ``max_pending_blocks`` blocks waiting to be sent (the engine pauses the
session's generation there) and each sent within ``send_timeout_seconds``. Whatever goes wrong — a violation, a
fault while reading, the client leaving — ends in :func:`serve_stream`'s ``finally``, which frees the slot and
the engine session.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import shutil
import tempfile
import time

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from read_jax.errors import InputError
from read_jax.serve import fmp4
from read_jax.serve import protocol as proto
from read_jax.serve.engine import AdmissionError
from read_jax.serve.logs import event
from read_jax.serve.security import new_request_id
from read_jax.serve.state import ServeState, run_in
from read_jax.serve.uploads import decode_portrait

FEED_BYTES = 640  # PCM passed on in 20 ms pieces (coalesced, or split): tiny frames cost the engine nothing more
INTERRUPTS_IN_FLIGHT = 4  # interrupts sent on to the engine and not yet answered; the next waits (bounds the queue)
CLOSE_SECONDS = 2.0  # the final error and close frame get this long (a client that does not read gets no more)


class StreamSession:
  """The state of one WebSocket between its reader and its writer."""

  def __init__(self, ws: WebSocket, state: ServeState, session_id: str):
    self.ws = ws
    self.state = state
    self.id = session_id
    self.limits = state.limits
    self.loop = asyncio.get_running_loop()
    self.events: asyncio.Queue = asyncio.Queue(  # engine → writer
      maxsize=self.limits.max_pending_blocks + INTERRUPTS_IN_FLIGHT + 4)
    self.failure: proto.ProtocolError | None = None
    self.sid = None  # the engine's session id
    self.deadline = self.loop.time() + self.limits.max_session_wall_seconds
    self.samples = 0  # PCM samples received
    self.samples_fed = 0  # PCM samples passed on to the engine
    self.fed = bytearray()  # PCM received and not yet passed on (under FEED_BYTES, or ahead of the frames)
    self.arrivals: collections.deque = collections.deque()  # (samples received so far, time), one per 20 ms
    self.progress = asyncio.Event()  # set when a block has been sent or the session fails (wakes the reader)
    self.first_audio: float | None = None
    self.ended_at: float | None = None
    self.keep_pcm = False  # fmp4: each block carries its speech
    self.pcm = bytearray()  # fmp4 only: PCM16 from sample pcm_start on
    self.pcm_start = 0
    self.first_sent = False
    self.frames_sent = 0
    self.blocks_waiting = 0  # blocks the engine handed over that are not yet sent
    # Interrupts: the audio the session uses is what was received less what each interrupt dropped. The session's
    # sample s (frame f's audio ends at s = 640(f + 1)) was received as s + the offset of the last cut before it.
    self.marks: collections.deque = collections.deque()  # samples received at each interrupt not yet applied
    self.cuts: list[tuple[int, int]] = []  # (session sample where the audio after an interrupt begins, offset)
    self.engine_dropped = 0  # samples passed to the engine that an interrupt dropped

  # ------------------------------------------------------------------------------------------
  # From the engine's lane thread

  def on_block(self, block) -> None:
    self._post(("block", block))

  def on_done(self, total: int) -> None:
    self._post(("done", total))

  def on_error(self, exc: BaseException) -> None:
    self._post(("error", exc))

  def on_interrupt(self, sample: int, dropped: int) -> None:
    self._post(("interrupted", sample, dropped))

  def _post(self, item) -> None:
    try:
      self.loop.call_soon_threadsafe(self._put, item)
    except RuntimeError:  # the event loop is closed: the session is gone
      pass

  def _put(self, item) -> None:
    if item[0] == "block":
      self.blocks_waiting += 1
    try:
      self.events.put_nowait(item)
    except asyncio.QueueFull:  # the engine pauses at max_pending_blocks, so this is a bug: this session only
      self.fail(proto.INTERNAL, "internal error: the session's send queue overflowed")

  # ------------------------------------------------------------------------------------------
  # Either side

  def fail(self, code: int, message: str) -> None:
    """End the session with ``code`` (the first failure wins); the writer sends it."""
    if self.failure is None:
      self.failure = proto.ProtocolError(code, message)
    self.progress.set()
    try:
      self.events.put_nowait(("wake",))
    except asyncio.QueueFull:  # the writer has events to take and checks the failure after each
      pass

  def shut_down(self, message: str) -> None:
    self.fail(proto.RESTART, message)

  def queued_blocks(self) -> int:
    return self.blocks_waiting

  def received(self, sample: int, at_cut: bool = False) -> int:
    """Samples received when the session's audio had reached ``sample`` (``at_cut``: where audio after an
    interrupt at ``sample`` begins)."""
    offset = 0
    for cut, off in self.cuts:
      if cut < sample or (at_cut and cut == sample):
        offset = off
    return sample + offset

  def audio_time(self, frame_end: int) -> float | None:
    """When the audio up to video frame ``frame_end`` (exclusive) had arrived (the end, for padding)."""
    need = self.received(frame_end * proto.SAMPLE_RATE // self.state.fps)
    while len(self.arrivals) > 1 and self.arrivals[0][0] < need:
      self.arrivals.popleft()
    if self.arrivals and self.arrivals[0][0] >= need:
      return self.arrivals[0][1]
    return self.ended_at

  def block_pcm(self, first: int, n: int) -> np.ndarray:
    fps = self.state.fps
    start, stop = first * proto.SAMPLE_RATE // fps, (first + n) * proto.SAMPLE_RATE // fps
    lo, hi = 2 * max(start - self.pcm_start, 0), 2 * max(stop - self.pcm_start, 0)
    pcm = np.frombuffer(bytes(self.pcm[lo:hi]), "<i2")
    del self.pcm[:hi]
    self.pcm_start = max(stop, self.pcm_start)
    return pcm

  # ------------------------------------------------------------------------------------------
  # Client → engine

  async def read(self) -> None:
    """The reader task: any fault here fails this session alone (the writer closes it)."""
    try:
      await self._read()
    except proto.ProtocolError as e:
      self.fail(e.code, e.message)
    except WebSocketDisconnect:
      self.fail(proto.GOING_AWAY, "client went away")
    except Exception as e:  # a bug while reading: this session only
      event(self.state.log, "session.error", level=logging.ERROR, exc_info=e, session=self.id, where="read")
      self.fail(proto.INTERNAL, f"internal error while reading: {type(e).__name__}")

  async def _read(self) -> None:
    limits, engine = self.limits, self.state.engine
    max_samples = int(limits.max_session_seconds * proto.SAMPLE_RATE)
    rate = limits.max_messages_per_second
    tokens, refilled = rate, self.loop.time()
    active = self.loop.time()  # last audio or control message
    ended = False
    while True:
      now = self.loop.time()
      tokens = min(rate, tokens + (now - refilled) * rate)
      refilled = now
      if tokens < 1:  # a flood of messages is read at the limit's pace (TCP holds the rest back)
        await asyncio.sleep((1 - tokens) / rate)
        continue
      tokens -= 1
      timeout = self.deadline - now if ended else min(self.deadline - now, active + limits.idle_timeout_seconds - now)
      try:
        msg = await asyncio.wait_for(self.ws.receive(), max(timeout, 0.0))
      except TimeoutError:
        if self.loop.time() >= self.deadline - 1e-3:
          return  # the writer closes the session at its deadline
        raise proto.ProtocolError(proto.POLICY, f"idle: no audio or control message for "
                                                f"{limits.idle_timeout_seconds:g} s (idle_timeout_seconds; empty "
                                                "messages do not count)") from None
      if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
      data, text = msg.get("bytes"), msg.get("text")
      if data is not None:
        if len(data) > limits.max_message_bytes:
          raise proto.ProtocolError(proto.TOO_BIG, f"message of {len(data)} bytes is over the "
                                                   f"{limits.max_message_bytes} byte limit (max_message_bytes)")
        if ended:
          raise proto.ProtocolError(proto.POLICY, "audio after end")
        if not data:
          continue  # keeps nothing alive
        if len(data) % 2:
          raise proto.ProtocolError(proto.UNSUPPORTED, f"audio chunk of {len(data)} bytes: PCM16 needs an even byte "
                                                       "count")
        if self.samples + len(data) // 2 > max_samples:
          raise proto.ProtocolError(proto.POLICY, f"session over the {limits.max_session_seconds:g} s limit "
                                                  "(max_session_seconds)")
        now = time.perf_counter()
        if self.first_audio is None:
          self.first_audio = now
        if not self.arrivals or self.samples + len(data) // 2 - self.arrivals[-1][0] >= FEED_BYTES // 2:
          self.arrivals.append((self.samples + len(data) // 2, now))
        self.samples += len(data) // 2
        self.fed += data
        if not await self._feed(final=False):
          return
        active = self.loop.time()  # a wait for the frames to catch up is not the client's idleness
        continue
      if text is None:
        raise proto.ProtocolError(proto.POLICY, "a message with neither text nor bytes")
      if len(text) > limits.max_control_bytes:
        raise proto.ProtocolError(proto.TOO_BIG, f"text message of {len(text)} characters is over the "
                                                 f"{limits.max_control_bytes} limit after the start "
                                                 "(max_control_bytes)")
      control = proto.parse_control(text)
      active = self.loop.time()
      if control.type == "interrupt":
        if ended:
          raise proto.ProtocolError(proto.POLICY, "interrupt after end: the audio is complete (cancel stops the "
                                                  "session)")
        while len(self.marks) >= INTERRUPTS_IN_FLIGHT:  # the writer answers them first
          if not await self._wait_progress():
            return
        self.marks.append(self.samples)
        self.fed.clear()  # received, not yet passed on: dropped here, the rest by the engine
        engine.interrupt(self.sid)
        continue
      if control.type == "cancel":
        engine.cancel(self.sid)
        self._put(("cancelled",))
        return
      if ended:
        raise proto.ProtocolError(proto.POLICY, "end sent twice")
      if not await self._feed(final=True):
        return
      ended = True
      self.ended_at = time.perf_counter()
      engine.end(self.sid)

  async def _feed(self, final: bool) -> bool:
    """Pass the received PCM on in FEED_BYTES pieces (``final``: the rest too), never more than
    ``max_audio_ahead_seconds`` ahead of the frames sent: a client that sends minutes of audio at once gets its
    frames at the engine's pace and holds its lane for one unit at a time, not for the whole file (TCP holds
    the rest of its audio back). False when the session ended while waiting."""
    sr, fps = proto.SAMPLE_RATE, self.state.fps
    ahead = int(max(self.limits.max_audio_ahead_seconds, 2 * self.state.engine.unit_duration + 1) * sr)
    while len(self.fed) >= FEED_BYTES or (final and self.fed):
      room = ahead - (self.samples_fed - self.engine_dropped - self.frames_sent * sr // fps)  # samples
      if room < min(len(self.fed), FEED_BYTES) // 2:  # the frames catch up first (the engine has units to work on)
        if not await self._wait_progress():
          return False
        continue
      n = min(len(self.fed), 2 * room)  # bytes, even: messages are
      n = n if final else n - n % FEED_BYTES
      data = bytes(self.fed[:n])
      del self.fed[:n]
      self.samples_fed += n // 2
      if self.keep_pcm:
        self.pcm += data
      self.state.engine.feed(self.sid, np.frombuffer(data, "<i2"))
    return True

  async def _wait_progress(self) -> bool:
    """Until the writer sends a block or answers an interrupt; False when the session ended meanwhile."""
    self.progress.clear()
    try:
      async with asyncio.timeout_at(self.deadline):
        await self.progress.wait()
    except TimeoutError:
      return False  # the writer closes the session at its deadline
    return self.failure is None

  # ------------------------------------------------------------------------------------------
  # Engine → client

  async def send(self, data) -> None:
    """One message within ``send_timeout_seconds``: a client that stops reading fills the socket's buffers,
    and then this is what ends its session."""
    try:
      async with asyncio.timeout(self.limits.send_timeout_seconds):
        if isinstance(data, str):
          await self.ws.send_text(data)
        else:
          await self.ws.send_bytes(data)
    except TimeoutError:
      raise proto.ProtocolError(proto.POLICY, "client is not reading: a message waited over "
                                f"{self.limits.send_timeout_seconds:g} s (send_timeout_seconds)") from None

  async def write(self, encoder) -> int:
    """Engine → client until done; the close code (1000 when the session finished or was cancelled)."""
    state = self.state
    while True:
      try:
        async with asyncio.timeout_at(self.deadline):
          item = await self.events.get()
      except TimeoutError:
        raise proto.ProtocolError(proto.POLICY, f"deadline: the session is over its "
                                                f"{self.limits.max_session_wall_seconds:g} s "
                                                "(max_session_wall_seconds)") from None
      if item[0] == "block":
        self.blocks_waiting -= 1
      if self.failure is not None:
        if self.failure.code == proto.GOING_AWAY:
          return proto.GOING_AWAY
        raise self.failure
      kind = item[0]
      if kind == "wake":
        continue
      if kind == "cancelled":
        await self.send(proto.done(self.frames_sent, cancelled=True))
        await self.close(proto.NORMAL)
        return proto.NORMAL
      if kind == "error":
        exc = item[1]
        if isinstance(exc, InputError):
          raise proto.ProtocolError(proto.UNSUPPORTED, str(exc))
        event(state.log, "session.error", level=logging.ERROR, exc_info=exc, session=self.id, where="engine")
        raise proto.ProtocolError(proto.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
      if kind == "interrupted":
        await self._interrupted(*item[1:])
        continue
      if kind == "done":
        await self.send(proto.done(int(item[1])))
        await self.close(proto.NORMAL)
        return proto.NORMAL
      await self._send_block(item[1], encoder)

  async def _interrupted(self, sample: int, dropped: int) -> None:
    """An interrupt applied by the engine (in order with the blocks): the session's audio ends at ``sample``, the
    next ``dropped`` samples passed to the engine are gone."""
    received = self.marks.popleft()
    start = self.received(sample, at_cut=True)  # where the audio since the last interrupt began, received
    self.cuts.append((sample, received - sample))
    self.engine_dropped += dropped
    if self.keep_pcm and dropped:
      lo = 2 * max(sample - self.pcm_start, 0)
      del self.pcm[lo:lo + 2 * dropped]
    self.progress.set()  # the audio ahead of the frames shrank
    self.state.metrics.interrupts.inc()
    await self.send(proto.interrupted(sample, max(received - start, 0) / proto.SAMPLE_RATE))

  async def _send_block(self, block, encoder) -> None:
    state = self.state
    frames = np.ascontiguousarray(block.frames, np.uint8)  # [n, H, W, 3]
    n = frames.shape[0]
    if encoder is not None:
      payload = await run_in(state.session_pool, encoder.encode, frames, self.block_pcm(block.first_frame, n),
                             block.first_frame)
    else:
      payload = frames.tobytes()
    heard = self.audio_time(block.first_frame + n)
    latency = None if heard is None else max(time.perf_counter() - heard, 0.0)
    first = None
    if not self.first_sent and self.first_audio is not None:
      first, self.first_sent = time.perf_counter() - self.first_audio, True
    await self.send(proto.clip(int(block.index), int(block.first_frame), n, len(payload), latency))
    await self.send(payload)
    state.engine.delivered(self.sid)
    self.frames_sent += n
    self.progress.set()
    state.metrics.blocks.inc()
    state.metrics.frames.inc(n)
    if latency is not None:
      state.metrics.block_latency.observe(latency)
    if first is not None:
      state.metrics.first_frame.observe(first)

  async def close(self, code: int, reason: str = "") -> None:
    async with asyncio.timeout(self.limits.send_timeout_seconds):
      await self.ws.close(code=code, reason=reason)

  async def send_error(self, code: int, message: str) -> None:
    """The session's one error message and its close code, if the client still takes them."""
    if self.ws.application_state != WebSocketState.CONNECTED or self.ws.client_state != WebSocketState.CONNECTED:
      return
    try:
      async with asyncio.timeout(CLOSE_SECONDS):
        await self.ws.send_text(proto.error(code, message))
        await self.ws.close(code=code, reason=proto.close_reason(message))
    except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
      pass


# ---------------------------------------------------------------------------------------------


async def serve_stream(ws: WebSocket, state: ServeState) -> None:
  """``WS /v1/stream``: one session from accept to close (module docstring)."""
  limits, engine, metrics = state.limits, state.engine, state.metrics
  session_id = ws.scope.get("state", {}).get("request_id") or new_request_id()
  client = ws.client
  offered = ws.scope.get("subprotocols") or []
  await ws.accept(subprotocol=proto.SUBPROTOCOL if proto.SUBPROTOCOL in offered else None)
  s = StreamSession(ws, state, session_id)
  code, reason = proto.RESTART, "cancelled by the server's shutdown"  # unless a path below says otherwise
  admitted, tmp, opened = False, None, time.perf_counter()
  try:
    try:
      msg = await asyncio.wait_for(ws.receive(), limits.idle_timeout_seconds)
    except TimeoutError:
      raise proto.ProtocolError(proto.POLICY, f"idle: no start message within {limits.idle_timeout_seconds:g} s "
                                              "(idle_timeout_seconds)") from None
    if msg["type"] == "websocket.disconnect":
      code, reason = proto.GOING_AWAY, "client went away before its start"
      return
    data = msg.get("bytes") if msg.get("bytes") is not None else msg.get("text")
    if data is not None and len(data) > limits.max_message_bytes:
      raise proto.ProtocolError(proto.TOO_BIG, f"message of {len(data)} bytes is over the "
                                               f"{limits.max_message_bytes} byte limit (max_message_bytes)")
    if msg.get("text") is None:
      raise proto.ProtocolError(proto.UNSUPPORTED, "the first message must be the JSON start message, got binary "
                                                   "data")
    start = proto.parse_start(msg["text"], state.default_image is not None, engine.steps)
    if state.draining:
      metrics.refused.labels("draining").inc()
      raise proto.ProtocolError(proto.TRY_LATER, "draining: this server is shutting down; connect again (another "
                                                 "replica)")
    if state.live >= limits.max_sessions:
      metrics.refused.labels("busy").inc()
      raise proto.ProtocolError(proto.TRY_LATER, f"busy: {limits.max_sessions} sessions already running "
                                                 "(max_sessions); try again later")
    admitted = True
    state.live += 1
    state.sessions[session_id] = s
    metrics.sessions.inc()
    metrics.sessions_active.inc()
    if start.portrait is None:
      image = state.default_image
    else:
      try:
        image = await run_in(state.session_pool, decode_portrait, start.portrait, "start.portrait",
                             limits.max_portrait_pixels)
      except InputError as e:
        raise proto.ProtocolError(proto.UNSUPPORTED, str(e)) from None
    try:
      s.sid = await run_in(state.session_pool, _open, engine, image, start, s, limits.max_pending_blocks,
                           orphan=engine.cancel)
    except AdmissionError as e:
      metrics.refused.labels("capacity").inc()
      raise proto.ProtocolError(proto.TRY_LATER, f"refused: {e}") from None
    except InputError as e:
      raise proto.ProtocolError(proto.UNSUPPORTED, f"start: {e}") from None
    encoder = None
    if start.format == "fmp4":
      tmp = tempfile.mkdtemp(prefix="read_jax_fmp4_")
      encoder = fmp4.FragmentEncoder(state.fps, tmp)
      s.keep_pcm = True
    event(state.log, "session.open", session=session_id, client=_client(client), format=start.format,
          portrait="default" if start.portrait is None else f"{len(start.portrait)} bytes")
    await s.send(proto.ready(session_id, state.size, state.fps, start.format, fmp4.MIME if encoder else None,
                             engine.mode))
    reader = asyncio.create_task(s.read())
    try:
      code = await s.write(encoder)
      reason = "done" if code == proto.NORMAL else (s.failure.message if s.failure else "")
    finally:
      reader.cancel()
      await asyncio.gather(reader, return_exceptions=True)
  except proto.ProtocolError as e:
    code, reason = e.code, e.message
    await s.send_error(e.code, e.message)
  except WebSocketDisconnect:
    code, reason = proto.GOING_AWAY, "client went away"
  except Exception as e:  # a bug or a device error: this session only
    code, reason = proto.INTERNAL, f"internal error: {type(e).__name__}: {e}"
    event(state.log, "session.error", level=logging.ERROR, exc_info=e, session=session_id, where="session")
    await s.send_error(code, reason)
  finally:
    if s.sid is not None:
      engine.cancel(s.sid)
    if admitted:
      state.live -= 1
      state.sessions.pop(session_id, None)
      metrics.sessions_active.dec()
      if s.first_audio is not None and s.frames_sent and code == proto.NORMAL:
        metrics.realtime_factor.set((time.perf_counter() - s.first_audio) / (s.frames_sent / state.fps))
    if code == proto.INTERNAL:
      metrics.errors.labels("session").inc()
    metrics.sessions_closed.labels(str(code)).inc()
    if tmp is not None:
      shutil.rmtree(tmp, ignore_errors=True)
    quiet = code in (proto.NORMAL, proto.GOING_AWAY)
    event(state.log, "session.close", level=logging.INFO if quiet else logging.WARNING,
          session=session_id, client=_client(client), code=code, reason=reason, admitted=admitted,
          frames=s.frames_sent, audio_seconds=round(s.samples / proto.SAMPLE_RATE, 3),
          wall_seconds=round(time.perf_counter() - opened, 3))


def _open(engine, image, start: proto.Start, s: StreamSession, max_pending: int):
  return engine.open(image, seed=start.seed, steps=start.steps, on_block=s.on_block, on_done=s.on_done,
                     on_error=s.on_error, on_interrupt=s.on_interrupt, max_pending=max_pending)


def _client(client) -> str:
  return f"{client.host}:{client.port}" if client else "?"
