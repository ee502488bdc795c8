"""The server under hostile and broken clients (read_jax/serve, docs/serving.md "Security model" and "Limits").

A real uvicorn on 127.0.0.1 and a free port, in a thread, with an API key and small limits so every case trips
quickly. Each row of CASES is one attack or broken client and the status or close code and reason it must get
(those that mostly wait for a timeout run on their own threads from the start, beside the rest); meanwhile a
background client runs good sessions one after another, and every one must deliver every frame, the same frames
each time. The last test reads /metrics: no session, queue, video or thread left over, the
engine's lane alive, and the resident memory back within 50 MB of where it was before the cases.

Clients: httpx for HTTP, websockets' sync client for well-formed WebSockets, and a raw socket where the attack
is below what a client library will send (a frame header claiming 100 MB, invalid UTF-8, half a frame, a
client that never reads)."""

import base64
import concurrent.futures
import ctypes
import gc
import io
import json
import logging
import os
import re
import socket
import struct
import subprocess
import threading
import time
import wave
import zlib

import jax
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
ws_client = pytest.importorskip("websockets.sync.client")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from read_jax import audio as audio_lib  # noqa: E402
from read_jax.serve import metrics as metrics_lib  # noqa: E402
from read_jax.serve import server as server_lib  # noqa: E402
from read_jax.serve.app import Limits, Security, create_app  # noqa: E402
from read_jax.serve.engine import Engine  # noqa: E402

pytestmark = pytest.mark.slow  # the module's engine compiles at start (~10 s on an idle CPU)

SR = audio_lib.SAMPLE_RATE
KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMITS = Limits(max_sessions=8, max_message_bytes=1 << 20, max_session_seconds=20.0, max_session_wall_seconds=4.0,
                idle_timeout_seconds=1.0, max_messages_per_second=1000.0, max_audio_ahead_seconds=3.0,
                max_pending_blocks=2,
                send_timeout_seconds=1.0, max_portrait_pixels=1 << 20, max_upload_bytes=2 << 20, max_videos=2,
                upload_timeout_seconds=2.0, video_deadline_seconds=20.0)
HEADER_TIMEOUT = 1.0  # seconds for a whole request head
UNACKED_TIMEOUT = 6.0  # seconds the kernel keeps a connection whose client does not read (well past the 1 s send
# timeout: under a loaded CPU the event loop can lag by seconds, and the kernel must not drop the client first)
GOOD_SECONDS = 0.8  # each good session's speech


def _png(width=37, height=41, seed=0) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
  return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
  """A PNG that claims width × height RGB pixels and holds one empty row: what a decompression bomb's header says."""
  def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
          chunk(b"IDAT", zlib.compress(b"\x00" * (1 + 3 * 16))) + chunk(b"IEND", b""))


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n%%EndComments\n"
       b"0 0 moveto 64 64 lineto stroke\nshowpage\n%%EOF\n")
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64"/></svg>'


def _speech(seconds: float, seed=0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * SR)) / SR
  x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)
  return (x * 32767).astype("<i2")


def _wav(seconds: float) -> bytes:
  buf = io.BytesIO()
  with wave.open(buf, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(SR)
    w.writeframes(_speech(seconds).tobytes())
  return buf.getvalue()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class _Records(logging.Handler):
  """The server's structured log records (session.close with its code and reason, video outcomes)."""

  def __init__(self):
    super().__init__()
    self.records = []

  def emit(self, record):
    self.records.append((record.getMessage(), dict(getattr(record, "fields", {}))))

  def find(self, name, **match):
    return [f for n, f in self.records if n == name and all(f.get(k) == v for k, v in match.items())]


class _Server:
  def __init__(self, tmp, pipe):
    self.tmp = tmp
    self.engine = Engine(pipe, batch_sizes=(1,), max_sessions=16, devices=jax.local_devices()[:1]).start()
    self.log = _Records()
    logger = logging.getLogger("read_jax.serve.hostile-test")
    logger.addHandler(self.log)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    self.app = create_app(self.engine, pipe, LIMITS, default_portrait=_png(29, 31, seed=5),
                          security=Security(api_key=KEY), log=logger)
    self.port = _free_port()
    self.base = f"http://127.0.0.1:{self.port}"
    self.url = f"ws://127.0.0.1:{self.port}/v1/stream"
    self.server, sock = server_lib.make_server(  # scripts/serve.py's server: drain, watchdogs, socket options
      self.app, host="127.0.0.1", port=self.port, drain_seconds=5, max_connections=200,
      ws_max_size=LIMITS.max_message_bytes + 4096, header_timeout=HEADER_TIMEOUT, unacked_timeout=UNACKED_TIMEOUT,
      log_config=None)
    self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
    self.thread.start()
    deadline = time.time() + 60
    while not self.server.started and time.time() < deadline:
      time.sleep(0.05)
    assert self.server.started, "uvicorn did not start"

  def metrics(self) -> dict:
    r = httpx.get(self.base + "/metrics", headers=AUTH, timeout=10)
    assert r.status_code == 200
    return metrics_lib.parse(r.text)

  def close(self):
    self.server.should_exit = True
    self.thread.join(10)
    self.engine.stop(cancel=True)


# ---------------------------------------------------------------------------------------------
# Clients


def _ws(srv, **kwargs):
  headers = dict(AUTH)
  headers.update(kwargs.pop("headers", {}))
  return ws_client.connect(srv.url, additional_headers=headers, max_size=None, open_timeout=10, **kwargs)


def _start(**extra) -> str:
  msg = {"type": "start", "sample_rate": SR, "format": "raw", "seed": 0}
  msg.update(extra)
  return json.dumps(msg)


def _outcome(ws, timeout=15.0):
  """Read until the server closes: ("close", code, the error message or the close reason)."""
  error = None
  try:
    while True:
      msg = ws.recv(timeout=timeout)
      if isinstance(msg, str) and json.loads(msg).get("type") == "error":
        error = json.loads(msg)["message"]
  except ConnectionClosed as e:
    code = e.rcvd.code if e.rcvd else 1006
    return ("close", code, error or (e.rcvd.reason if e.rcvd else ""))
  except TimeoutError:
    return ("open", None, "no close within the timeout")


def _ws_after_ready(srv, *actions, start=None):
  """Start a session, do ``actions`` on the socket, return how it ended."""
  with _ws(srv) as ws:
    ws.send(start or _start())
    ready = json.loads(ws.recv(timeout=15))
    assert ready["type"] == "ready", ready
    for act in actions:
      act(ws)
    return _outcome(ws)


def _ws_start(srv, start):
  with _ws(srv) as ws:
    ws.send(start)
    return _outcome(ws)


def _handshake_status(srv, headers=None, subprotocols=None):
  try:
    with ws_client.connect(srv.url, additional_headers=headers or {}, subprotocols=subprotocols, open_timeout=10):
      return ("open", 101, "")
  except InvalidStatus as e:
    return ("http", e.response.status_code, bytes(e.response.body).decode(errors="replace"))


class _RawWS:
  """A WebSocket by hand: the handshake, then frames as given (masked, as a client must)."""

  def __init__(self, srv, rcvbuf: int | None = None):
    self.sock = socket.socket()
    if rcvbuf is not None:
      self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    self.sock.settimeout(15)
    self.sock.connect(("127.0.0.1", srv.port))
    key = base64.b64encode(os.urandom(16)).decode()
    self.sock.sendall((f"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                       f"Authorization: Bearer {KEY}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
      head += self.sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    self.buffer = b""

  def header(self, opcode: int, length: int, fin=True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    if length < 126:
      return struct.pack(">BB", first, 0x80 | length)
    if length < 1 << 16:
      return struct.pack(">BBH", first, 0x80 | 126, length)
    return struct.pack(">BBQ", first, 0x80 | 127, length)

  def frame(self, opcode: int, payload: bytes, fin=True) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if len(payload) < 4096 else \
        (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), len(payload))).tobytes()
    return self.header(opcode, len(payload), fin) + mask + masked

  def send(self, opcode: int, payload: bytes):
    self.sock.sendall(self.frame(opcode, payload))

  def next_frame(self):
    """(opcode, payload) of the server's next frame; None when the connection ends."""
    try:
      while True:
        if len(self.buffer) >= 2:
          n, off = self.buffer[1] & 0x7F, 2
          if n == 126 and len(self.buffer) >= 4:
            n, off = struct.unpack(">H", self.buffer[2:4])[0], 4
          elif n == 127 and len(self.buffer) >= 10:
            n, off = struct.unpack(">Q", self.buffer[2:10])[0], 10
          if n < 126 or off > 2:
            if len(self.buffer) >= off + n:
              frame = (self.buffer[0] & 0x0F, self.buffer[off:off + n])
              self.buffer = self.buffer[off + n:]
              return frame
        data = self.sock.recv(1 << 16)
        if not data:
          return None
        self.buffer += data
    except OSError:  # reset, timeout
      return None

  def frames(self):
    """Server frames until it closes: [(opcode, payload)]."""
    out = []
    while (frame := self.next_frame()) is not None:
      out.append(frame)
      if frame[0] == 8:
        break
    return out

  def outcome(self):
    frames = self.frames()
    error = next((json.loads(p)["message"] for op, p in frames if op == 1 and b'"error"' in p), None)
    close = next((p for op, p in frames if op == 8), None)
    if close is None:
      return ("close", 1006, error or "connection dropped")
    code = struct.unpack(">H", close[:2])[0] if len(close) >= 2 else 1005
    return ("close", code, error or close[2:].decode(errors="replace"))

  def close(self):
    self.sock.close()


def _post(srv, files, data=None, headers=None, timeout=60):
  return httpx.post(srv.base + "/v1/videos", files=files, data=data or {}, headers={**AUTH, **(headers or {})},
                    timeout=timeout)


def _http(r):
  try:
    reason = r.json().get("error", "")
  except ValueError:
    reason = r.text[:100]
  return ("http", r.status_code, reason)


def _held_metrics(srv) -> dict:
  """/metrics after the collector and glibc's malloc_trim: resident memory is then what is held, not free pages
  the allocator keeps for later (tens of MB after thousands of short sessions, all reusable)."""
  gc.collect()
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):  # not glibc: the number includes the allocator's free pages
    pass
  return srv.metrics()


def _wait_for(predicate, timeout=20.0):
  deadline = time.time() + timeout
  while time.time() < deadline:
    value = predicate()
    if value:
      return value
    time.sleep(0.1)
  return predicate()


# ---------------------------------------------------------------------------------------------
# The cases: each a function of the server returning (kind, code, reason)


def no_key(srv):
  return _http(httpx.get(srv.base + "/v1/info", timeout=10))


def wrong_key(srv):
  return _http(httpx.get(srv.base + "/metrics", headers={"Authorization": "Bearer " + "x" * 24}, timeout=10))


def ws_no_key(srv):
  return _handshake_status(srv)


def ws_wrong_key_subprotocol(srv):
  return _handshake_status(srv, subprotocols=["read.v1", "bearer.wrong-key-0123456789"])


def foreign_origin_ws(srv):  # cross-site WebSocket hijacking: a page elsewhere, the operator's key or not
  return _handshake_status(srv, headers={**AUTH, "Origin": "https://evil.example"})


def foreign_origin_post(srv):
  return _http(_post(srv, {"portrait": ("p.png", _png()), "audio": ("a.wav", _wav(0.5))},
                     headers={"Origin": "http://attacker.example:8000"}))


def dns_rebinding_host(srv):  # a rebinding page reaches 127.0.0.1 under its own name
  return _http(httpx.get(srv.base + "/metrics", headers={**AUTH, "Host": "attacker.example:8000"}, timeout=10))


def nested_json_start(srv):
  return _ws_start(srv, "[" * 100_000 + "]" * 100_000)


def nested_json_after_start(srv):
  return _ws_after_ready(srv, lambda ws: ws.send("[" * 500 + "]" * 500))


def non_dict_json(srv):
  return _ws_start(srv, '"start"')


def nan_seed(srv):
  return _ws_start(srv, '{"type": "start", "seed": NaN}')


def huge_integer_seed(srv):
  return _ws_start(srv, '{"type": "start", "seed": ' + "9" * 5000 + "}")


def unicode_format(srv):
  return _ws_start(srv, _start(format="ｆｍｐ４"))


def odd_sample_rate(srv):
  return _ws_start(srv, _start(sample_rate=44100))


def boolean_sample_rate(srv):
  return _ws_start(srv, _start(sample_rate=True))


def steps_million_ws(srv):
  return _ws_start(srv, _start(steps=10**6))


def binary_start(srv):
  with _ws(srv) as ws:
    ws.send(b"\x00\x01\x02\x03")
    return _outcome(ws)


def non_utf8_text(srv):
  raw = _RawWS(srv)
  try:
    raw.send(0x1, b'{"type": "start", "x": "\xff\xfe"}')
    return raw.outcome()
  finally:
    raw.close()


def text_frame_100mb(srv):
  """A text frame whose header claims 100 MB: closed at the header, never buffered."""
  raw = _RawWS(srv)
  try:
    raw.sock.sendall(raw.header(0x1, 100 << 20) + os.urandom(4) + b"\x00" * 1000)
    return raw.outcome()
  finally:
    raw.close()


def huge_base64_portrait(srv):
  """A start just over max_message_bytes (the WebSocket layer's own cap, a little higher, closes the 100 MB one)."""
  start = _start(portrait="")
  pad = LIMITS.max_message_bytes + 1000 - len(start)
  return _ws_start(srv, _start(portrait=base64.b64encode(b"\x00" * (pad * 3 // 4)).decode()))


def portrait_20000_squared(srv):
  return _ws_start(srv, _start(portrait=base64.b64encode(_png_header_only(20_000, 20_000)).decode()))


def portrait_3000_squared(srv):  # under Pillow's own bomb limit: ours, from the header
  return _ws_start(srv, _start(portrait=base64.b64encode(_png_header_only(3000, 3000)).decode()))


def portrait_eps(srv):
  return _ws_start(srv, _start(portrait=base64.b64encode(EPS).decode()))


def portrait_svg(srv):
  return _ws_start(srv, _start(portrait="data:image/svg+xml;base64," + base64.b64encode(SVG).decode()))


def portrait_not_base64(srv):
  return _ws_start(srv, _start(portrait="%%% not base64 %%%"))


def odd_byte_count(srv):
  return _ws_after_ready(srv, lambda ws: ws.send(b"\x00" * 7))


def text_between_audio(srv):
  return _ws_after_ready(srv, lambda ws: ws.send(_speech(0.1).tobytes()), lambda ws: ws.send('{"type": "pause"}'))


def audio_after_end(srv):
  return _ws_after_ready(srv, lambda ws: ws.send(_speech(0.2).tobytes()), lambda ws: ws.send('{"type": "end"}'),
                         lambda ws: ws.send(_speech(0.1).tobytes()))


def six_seconds_at_once(srv):
  """6 s of speech in one message, then end: passed to the engine 3 s ahead of the frames sent (the
  lane is never held for the whole file), and every frame comes."""
  with _ws(srv) as ws:
    ws.send(_start())
    assert json.loads(ws.recv(timeout=15))["type"] == "ready"
    ws.send(_speech(6.0).tobytes())
    ws.send('{"type": "end"}')
    frames, done = 0, None
    while done is None:
      msg = ws.recv(timeout=30)
      if isinstance(msg, str):
        m = json.loads(msg)
        assert m["type"] in ("clip", "done"), m
        frames += m["frames"] if m["type"] == "clip" else 0
        done = m["frames"] if m["type"] == "done" else None
    outcome = _outcome(ws)
    assert frames == done == 150
    return outcome[:2] + ("done",)


def end_without_audio(srv):
  return _ws_after_ready(srv, lambda ws: ws.send('{"type": "end"}'))


def over_audio_budget(srv):
  chunk = np.zeros(SR, "<i2").tobytes()  # 1 s
  return _ws_after_ready(srv, lambda ws: [ws.send(chunk) for _ in range(21)])


def empty_keepalive(srv):
  """Empty binary messages every 0.2 s, no audio: they do not count as activity, so the idle timeout closes it."""
  stop = threading.Event()

  def keepalive(ws):
    def run():
      while not stop.is_set():
        try:
          ws.send(b"")
        except Exception:
          return
        time.sleep(0.2)
    threading.Thread(target=run, daemon=True).start()

  try:
    return _ws_after_ready(srv, keepalive)
  finally:
    stop.set()


def trickle_past_deadline(srv):
  """One sample every 0.3 s (activity, within budget): the wall-clock deadline ends it."""
  stop = threading.Event()

  def trickle(ws):
    def run():
      while not stop.is_set():
        try:
          ws.send(b"\x01\x00")
        except Exception:
          return
        time.sleep(0.3)
    threading.Thread(target=run, daemon=True).start()

  try:
    return _ws_after_ready(srv, trickle)
  finally:
    stop.set()


def half_a_frame(srv):
  """Slowloris on the WebSocket: a frame header and part of its payload, then nothing."""
  raw = _RawWS(srv)
  try:
    raw.send(0x1, _start().encode())
    ready = raw.next_frame()
    assert ready is not None and b'"ready"' in ready[1], ready
    raw.sock.sendall(raw.header(0x2, 6400) + os.urandom(4) + b"\x00" * 100)
    return raw.outcome()
  finally:
    raw.close()


def tiny_frames_flood(srv):
  """2,000 two-byte messages as fast as they go, then end: read at the message-rate limit, coalesced, and the
  session still ends normally with floor(25 · 2000 / 16000) = 3 frames."""
  with _ws(srv) as ws:
    ws.send(_start())
    assert json.loads(ws.recv(timeout=15))["type"] == "ready"
    for _ in range(2000):
      ws.send(b"\x10\x00")
    ws.send('{"type": "end"}')
    frames, done = 0, None
    while done is None:
      msg = ws.recv(timeout=30)
      if isinstance(msg, str):
        m = json.loads(msg)
        if m["type"] == "done":
          done = m["frames"]
        elif m["type"] == "clip":
          frames += m["frames"]
    outcome = _outcome(ws)
    assert frames == done == 3
    return outcome[:2] + ("done",)


def never_reads(srv):
  """Sends 15 s of speech and end, then never reads (a tiny receive buffer): generation pauses at
  max_pending_blocks, and the first block that cannot be sent within send_timeout_seconds closes the session."""
  raw = _RawWS(srv, rcvbuf=4096)
  port = raw.sock.getsockname()[1]
  try:
    raw.send(0x1, _start().encode())
    pcm = _speech(15.0).tobytes()
    for i in range(0, len(pcm), 32000):
      raw.send(0x2, pcm[i:i + 32000])
    raw.send(0x1, b'{"type": "end"}')
    closes = _wait_for(lambda: srv.log.find("session.close", client=f"127.0.0.1:{port}"), timeout=30)
    assert closes, "the server never closed the session"
    # The session is closed; the kernel then drops the connection itself (TCP_USER_TIMEOUT), with the block the
    # app could not send.
    ours = ("127.0.0.1", port)
    dropped = _wait_for(lambda: not [c for c in list(srv.server.server_state.connections)
                                     if getattr(c, "client", None) == ours], timeout=UNACKED_TIMEOUT + 10)
    assert dropped, "the connection outlived its session"
    return ("close", closes[0]["code"], closes[0]["reason"])
  finally:
    raw.close()


def slow_request_head(srv):
  """HTTP slowloris: a request head a byte at a time; the server closes the connection after HEADER_TIMEOUT."""
  head = f"GET /v1/info HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAuthorization: Bearer {KEY}\r\nX-Slow: ".encode()
  with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
    t0 = time.time()
    try:
      for i in range(200):
        s.sendall(head[i:i + 1] if i < len(head) else b"a")
        time.sleep(0.1)
        s.settimeout(0.01)
        try:
          if s.recv(1) == b"":
            return ("conn", "closed", f"after {time.time() - t0:.1f} s")
        except TimeoutError:
          pass
        finally:
          s.settimeout(15)
    except OSError:
      return ("conn", "closed", f"after {time.time() - t0:.1f} s")
  return ("conn", "open", "never closed")


def _read_answer(s, response=b""):
  """The whole HTTP answer on a raw socket: its head and body may come in separate segments, so the body is read
  to its Content-Length."""
  s.settimeout(5)
  while b"\r\n\r\n" not in response:
    more = s.recv(4096)
    if not more:
      return response
    response += more
  length = re.search(rb"content-length: *(\d+)", response.partition(b"\r\n\r\n")[0], re.IGNORECASE)
  while length and len(response.partition(b"\r\n\r\n")[2]) < int(length.group(1)):
    more = s.recv(4096)
    if not more:
      break
    response += more
  return response


def slow_upload_body(srv):
  """A POST whose body comes a few bytes a second: 408 after upload_timeout_seconds, the slot freed."""
  with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
    s.sendall((f"POST /v1/videos HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAuthorization: Bearer {KEY}\r\n"
               "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
               "--b\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n\r\n").encode())
    response = b""
    for _ in range(100):
      try:
        s.sendall(b"\x00")
      except OSError:
        break
      s.settimeout(0.2)
      try:
        response += s.recv(4096)
      except TimeoutError:
        pass
      if b"\r\n\r\n" in response:
        break
    response = _read_answer(s, response)
  head, _, body = response.decode(errors="replace").partition("\r\n\r\n")
  assert _wait_for(lambda: srv.metrics()["read_videos_admitted"] == 0)
  return ("http", int(head.split(" ", 2)[1]), body)


def busy(srv):
  """Sessions opened until max_sessions (8) are open, with the cases running in the background: the next start is
  refused with 1013 and the reason (the good sessions wait their turn)."""
  sockets = []
  with srv.good.turn:
    try:
      for _ in range(LIMITS.max_sessions + 1):
        ws = _ws(srv)
        sockets.append(ws)
        ws.send(_start())
        msg = json.loads(ws.recv(timeout=15))
        if msg["type"] != "ready":
          return _outcome(ws)[:2] + (msg["message"],)
      return ("open", None, "never refused")
    finally:
      for ws in sockets:
        ws.close()


def cancel(srv):
  return _ws_after_ready(srv, lambda ws: ws.send(_speech(0.3).tobytes()), lambda ws: ws.send('{"type": "cancel"}'))


# POST /v1/videos


def steps_million_post(srv):
  return _http(_post(srv, {"portrait": ("p.png", _png()), "audio": ("a.wav", _wav(0.5))}, {"steps": str(10**6)}))


def negative_seed_post(srv):
  return _http(_post(srv, {"portrait": ("p.png", _png()), "audio": ("a.wav", _wav(0.5))}, {"seed": "-1"}))


def m3u8_playlist(srv):
  """An HLS playlist named x.m3u8 that names a local file: ffmpeg must not follow it."""
  secret = os.path.join(srv.tmp, "secret.ts")
  subprocess.run([audio_lib.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=440:d=3", "-c:a", "aac",
                  "-f", "mpegts", secret], check=True)
  playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:0.1,\n{secret}\n#EXT-X-ENDLIST\n".encode()
  return _http(_post(srv, {"portrait": ("p.png", _png()), "audio": ("x.m3u8", playlist)}))


def concat_list(srv):
  secret = os.path.join(srv.tmp, "secret.wav")
  with open(secret, "wb") as f:
    f.write(_wav(1.0))
  listing = f"ffconcat version 1.0\nfile '{secret}'\n".encode()
  return _http(_post(srv, {"portrait": ("p.png", _png()), "audio": ("list.ffconcat", listing)}))


def audio_bomb(srv):
  """A small FLAC holding 60 s of silence (max_session_seconds is 20): refused while decoding."""
  path = os.path.join(srv.tmp, "long.flac")
  subprocess.run([audio_lib.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono",
                  "-t", "60", path], check=True)
  with open(path, "rb") as f:
    data = f.read()
  assert len(data) < LIMITS.max_upload_bytes
  return _http(_post(srv, {"portrait": ("p.png", _png()), "audio": ("a.flac", data)}))


def eps_portrait_post(srv):
  return _http(_post(srv, {"portrait": ("p.eps", EPS), "audio": ("a.wav", _wav(0.5))}))


def content_length_100mb(srv):
  """A Content-Length of 100 MB: 413 before any byte of the body is read."""
  with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
    s.sendall((f"POST /v1/videos HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAuthorization: Bearer {KEY}\r\n"
               "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 104857600\r\n\r\n").encode())
    head, _, body = _read_answer(s).decode(errors="replace").partition("\r\n\r\n")
  return ("http", int(head.split(" ", 2)[1]), body)


def chunked_body_over_cap(srv):
  """No Content-Length (chunked): the streamed body is cut at the cap (413), nothing kept past it."""
  def body():
    yield b"--b\r\nContent-Disposition: form-data; name=\"portrait\"; filename=\"p.png\"\r\n\r\n"
    for _ in range(LIMITS.max_body_bytes // (256 << 10) + 1):
      yield b"\x00" * (256 << 10)
  r = httpx.post(srv.base + "/v1/videos", content=body(),
                 headers={**AUTH, "Content-Type": "multipart/form-data; boundary=b"}, timeout=30)
  return _http(r)


def thirty_posts(srv):
  """30 POSTs at once: max_videos (2) are admitted and answered with an mp4, the rest get 429 at once."""
  barrier = threading.Barrier(30)
  results = [None] * 30
  files = {"portrait": ("p.png", _png()), "audio": ("a.wav", _wav(2.0))}

  def one(i):
    barrier.wait()
    r = _post(srv, files, timeout=120)
    results[i] = (r.status_code, r.headers.get("content-type", ""), r.content[:12])

  threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(180)
  statuses = sorted(s for s, _, _ in results)
  assert set(statuses) <= {200, 429} and 1 <= statuses.count(200) and statuses.count(429) >= 20, statuses
  assert all(ct == "video/mp4" and head[4:8] == b"ftyp" for s, ct, head in results if s == 200)
  return ("http", 429, f"{statuses.count(200)}×200 (mp4), {statuses.count(429)}×429")


def disconnect_mid_upload(srv):
  before = srv.metrics().get('read_videos_total{outcome="cancelled"}', 0)
  with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
    s.sendall((f"POST /v1/videos HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAuthorization: Bearer {KEY}\r\n"
               "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 500000\r\n\r\n"
               "--b\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n\r\n").encode()
              + b"\x00" * 100_000)
  after = _wait_for(lambda: srv.metrics().get('read_videos_total{outcome="cancelled"}', 0) > before and
                    srv.metrics()["read_videos_admitted"] == 0)
  return ("http", None, "cancelled, slot freed" if after else "still admitted")


def disconnect_mid_generation(srv):
  """The body is sent (19 s of speech), then the client leaves: the engine session is cancelled."""
  before = srv.metrics().get('read_videos_total{outcome="cancelled"}', 0)
  files = {"portrait": ("p.png", _png()), "audio": ("a.wav", _wav(19.0))}
  request = httpx.Request("POST", srv.base + "/v1/videos", files=files, headers=AUTH)
  body = request.read()
  head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
  with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
    s.sendall(f"POST /v1/videos HTTP/1.1\r\n{head}\r\n".encode() + body)
    time.sleep(0.3)  # the worker is decoding or generating
  after = _wait_for(lambda: srv.metrics().get('read_videos_total{outcome="cancelled"}', 0) > before and
                    srv.metrics()["read_videos_admitted"] == 0)
  return ("http", None, "cancelled, slot freed" if after else "still admitted")


# Cases that mostly wait (for a timeout or a deadline) run on their own threads from the start, beside the rest;
# each holds one session slot at most, and none is a POST (those would take the video slots the POST cases test).
BACKGROUND = (empty_keepalive, trickle_past_deadline, half_a_frame, never_reads, slow_request_head)

CASES = [  # (case, kind, expected status or close code, words in the reason)
  (no_key, "http", 401, "API key"),
  (wrong_key, "http", 401, "API key"),
  (ws_no_key, "http", 401, "API key"),
  (ws_wrong_key_subprotocol, "http", 401, "API key"),
  (foreign_origin_ws, "http", 403, "Origin"),
  (foreign_origin_post, "http", 403, "Origin"),
  (dns_rebinding_host, "http", 400, "Host"),
  (nested_json_start, "close", 1008, "nested too deeply"),
  (nested_json_after_start, "close", 1008, "JSON object"),
  (non_dict_json, "close", 1008, "JSON str"),
  (nan_seed, "close", 1008, "not valid JSON"),
  (huge_integer_seed, "close", 1008, "not valid JSON"),
  (unicode_format, "close", 1003, "start.format"),
  (odd_sample_rate, "close", 1003, "sample_rate"),
  (boolean_sample_rate, "close", 1003, "sample_rate"),
  (steps_million_ws, "close", 1008, "start.steps"),
  (binary_start, "close", 1003, "binary"),
  (non_utf8_text, "close", 1007, ""),
  (text_frame_100mb, "close", 1009, ""),
  (huge_base64_portrait, "close", 1009, ""),
  (portrait_20000_squared, "close", 1003, "megapixel limit"),
  (portrait_3000_squared, "close", 1003, "3000×3000, over the 1.04858-megapixel limit"),
  (portrait_eps, "close", 1003, "not a PNG, JPEG or WebP"),
  (portrait_svg, "close", 1003, "not a PNG, JPEG or WebP"),
  (portrait_not_base64, "close", 1003, "base64"),
  (odd_byte_count, "close", 1003, "even byte count"),
  (text_between_audio, "close", 1008, "unexpected message type"),
  (audio_after_end, "close", 1008, "audio after end"),
  (end_without_audio, "close", 1003, "shorter than one video frame"),
  (six_seconds_at_once, "close", 1000, "done"),
  (over_audio_budget, "close", 1008, "max_session_seconds"),
  (empty_keepalive, "close", 1008, "idle"),
  (trickle_past_deadline, "close", 1008, "deadline"),
  (half_a_frame, "close", 1008, "idle"),
  (tiny_frames_flood, "close", 1000, "done"),
  (never_reads, "close", 1008, "not reading"),
  (slow_request_head, "conn", "closed", "after"),
  (slow_upload_body, "http", 408, "upload_timeout_seconds"),
  (busy, "close", 1013, "max_sessions"),
  (cancel, "close", 1000, ""),
  (steps_million_post, "http", 400, "steps"),
  (negative_seed_post, "http", 400, "seed"),
  (m3u8_playlist, "http", 400, "audio: "),
  (concat_list, "http", 400, "not a plain audio or video file"),
  (audio_bomb, "http", 400, "longer than the 20 s limit"),
  (eps_portrait_post, "http", 400, "not a PNG, JPEG or WebP"),
  (content_length_100mb, "http", 413, "byte limit"),
  (chunked_body_over_cap, "http", 413, "byte limit"),
  (thirty_posts, "http", 429, "×429"),
  (disconnect_mid_upload, "http", None, "cancelled, slot freed"),
  (disconnect_mid_generation, "http", None, "cancelled, slot freed"),
]


# ---------------------------------------------------------------------------------------------


class _GoodSessions:
  """Good sessions one after another on their own thread while the cases run."""

  def __init__(self, srv):
    self.srv = srv
    self.turn = threading.Lock()  # held for each good session (a case that needs every slot takes it)
    self.pcm = _speech(GOOD_SECONDS, seed=3)
    self.stop = threading.Event()
    self.first = None  # the first session's frames, uint8 [F, H, W, 3] as bytes: every later one must match
    self.count = 0  # good sessions that delivered every frame, the same frames as the first
    self.errors = []
    self.thread = threading.Thread(target=self._run, daemon=True)
    self.thread.start()

  def _run(self):
    while not self.stop.is_set():
      try:
        with self.turn:
          frames = np.frombuffer(self._one(), np.uint8).astype(np.int16)
        if self.first is None:
          self.first = frames
        assert frames.shape == self.first.shape and np.abs(frames - self.first).max() <= 2, "frames changed"
        self.count += 1
      except Exception as e:  # recorded: the test fails on it
        self.errors.append(repr(e))
        return

  def _one(self):
    with _ws(self.srv) as ws:
      ws.send(_start(portrait=base64.b64encode(_png(seed=9)).decode(), seed=7))
      ready = json.loads(ws.recv(timeout=30))
      assert ready["type"] == "ready", ready
      for i in range(0, self.pcm.size, 640):
        ws.send(self.pcm[i:i + 640].tobytes())
      ws.send('{"type": "end"}')
      blocks, first = [], 0
      while True:
        m = json.loads(ws.recv(timeout=30))
        if m["type"] == "done":
          break
        assert m["type"] == "clip" and m["first_frame"] == first, m
        payload = ws.recv(timeout=30)
        assert len(payload) == m["bytes"]
        blocks.append(payload)
        first += m["frames"]
      assert m["frames"] == first == audio_lib.num_video_frames(self.pcm.size)
      return b"".join(blocks)

  def finish(self):
    self.stop.set()
    self.thread.join(60)


@pytest.fixture(scope="module")
def srv(tiny_pipeline, tmp_path_factory):
  server = _Server(str(tmp_path_factory.mktemp("hostile")), tiny_pipeline)
  yield server
  server.close()


@pytest.fixture(scope="module")
def baseline(srv):
  """/metrics once the server has served one session and one video (pools and encoders warmed), then the good
  sessions start beside the cases."""
  good = srv.good = _GoodSessions(srv)
  assert _wait_for(lambda: good.count >= 1 or good.errors, timeout=60) and not good.errors, good.errors
  r = _post(srv, {"portrait": ("p.png", _png()), "audio": ("a.wav", _wav(0.5))})
  assert r.status_code == 200, r.text
  before = _held_metrics(srv)
  srv.background_pool = concurrent.futures.ThreadPoolExecutor(len(BACKGROUND), "hostile-background")
  srv.background = {case: srv.background_pool.submit(case, srv) for case in BACKGROUND}
  yield before, good
  srv.background_pool.shutdown(wait=True)
  good.finish()


@pytest.mark.parametrize("case, kind, expected, words", CASES, ids=[c[0].__name__ for c in CASES])
def test_hostile(srv, baseline, case, kind, expected, words):
  got_kind, got, reason = srv.background[case].result(60) if case in BACKGROUND else case(srv)
  print(f"\n  {case.__name__}: {got_kind} {got} {reason[:110]!r}")
  assert (got_kind, got) == (kind, expected), reason
  assert words in reason, reason


def test_nothing_leaked(srv, baseline):
  """After every case: the good sessions all delivered every frame (the same frames each time), and /metrics
  shows no session, queue, video or engine work left, the lane alive, threads bounded by the pools, and the
  resident memory within 50 MB of where it was."""
  before, good = baseline
  srv.background_pool.shutdown(wait=True)  # the test's own client threads
  good.finish()
  assert not good.errors, good.errors
  assert good.count >= 3, f"only {good.count} good sessions ran beside the cases"
  m = _wait_for(lambda: (lambda m: m if m["read_sessions_active"] == 0 and m["read_engine_sessions"] == 0 else None)(
    srv.metrics()), timeout=20) or srv.metrics()
  assert m["read_sessions_active"] == 0 and m["read_engine_sessions"] == 0
  assert m["read_send_queue_blocks"] == 0 and m["read_videos_admitted"] == 0 and m["read_videos_in_flight"] == 0
  assert m["read_engine_queued_audio_chunks"] == 0 and m["read_engine_pending_blocks"] == 0
  assert m["read_engine_lanes_alive"] == 1 and m["read_engine_lanes_dead"] == 0
  assert m["read_threads"] <= before["read_threads"] + LIMITS.max_sessions + 2 + LIMITS.max_videos
  grown = (_held_metrics(srv)["process_resident_memory_bytes"] - before["process_resident_memory_bytes"]) / 2**20
  assert grown < 50, f"resident memory grew by {grown:.0f} MiB"
  assert httpx.get(srv.base + "/readyz", timeout=10).status_code == 200
  closed = {k: v for k, v in m.items() if k.startswith("read_sessions_closed_total")}
  print("\n  closes:", closed, f"\n  memory {grown:+.1f} MiB, threads {m['read_threads']:.0f} "
        f"(before {before['read_threads']:.0f}), good sessions {good.count}")
