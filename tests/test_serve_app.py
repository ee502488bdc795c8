"""The serving app (read_jax/serve, docs/serving.md): the WebSocket protocol in raw and fMP4, every error path and
its close code, the limits, one bad session beside a good one, POST /v1/videos, the probes and /metrics, the key
and origin checks, the engine's backpressure and lane supervision, the upload decoders. Hostile clients over a
real socket: tests/test_serve_hostile.py.

One tiny pipeline (configs/demo.py:tiny, 64² frames, clips of 3 latent frames) and one started engine for the
module; apps with other limits are built around the same engine (create_app is cheap)."""

import base64
import io
import json
import logging
import os
import subprocess
import tempfile
import threading
import time

import jax
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.testclient import WebSocketDenialResponse  # noqa: E402

from read_jax import audio as audio_lib  # noqa: E402
from read_jax.errors import AudioError, ConfigError, MediaError  # noqa: E402

engine_lib = pytest.importorskip("read_jax.serve.engine")
from read_jax.serve import app as app_lib  # noqa: E402
from read_jax.serve import fmp4, logs, uploads  # noqa: E402
from read_jax.serve import metrics as metrics_lib  # noqa: E402

SR = audio_lib.SAMPLE_RATE
pytestmark = pytest.mark.slow  # the module's engine compiles a few batch sizes (~30 s on a loaded CPU)


def _png(width=37, height=41, seed=0) -> bytes:
  rng = np.random.default_rng(seed)
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
  return buf.getvalue()


def _speech(seconds: float, seed=0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * SR)) / SR
  wave = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)
  return (wave * 32767).astype("<i2")


@pytest.fixture(scope="module")
def pipe(tiny_pipeline):  # conftest's: ReadPipeline.from_config(key(0), load_config("demo.py:tiny")), built once
  return tiny_pipeline


@pytest.fixture(scope="module")
def engine(pipe):
  # batching and several devices: tests/test_serve_engine.py; here one lane at batch size 1
  engine = engine_lib.Engine(pipe, batch_sizes=(1,), max_sessions=6, devices=jax.local_devices()[:1])
  engine.start()
  yield engine
  engine.stop(cancel=True)


def _client(engine, pipe, security=None, **limits):
  security = security or app_lib.Security(trusted_hosts=("testserver",))  # TestClient's Host
  app = app_lib.create_app(engine, pipe, app_lib.Limits(**limits), default_portrait=_png(29, 31, seed=5),
                           security=security)
  return TestClient(app)


def _start(fmt="raw", **extra):
  msg = {"type": "start", "portrait": base64.b64encode(_png()).decode(), "sample_rate": SR, "format": fmt,
         "seed": 0}
  msg.update(extra)
  return json.dumps(msg)


def _recv(ws) -> dict:
  """The next message as a dict: {"json": ...}, {"bytes": ...} or {"close": code}."""
  msg = ws.receive()
  if msg["type"] == "websocket.close":
    return {"close": msg.get("code", 1000), "reason": msg.get("reason", "")}
  if msg.get("text") is not None:
    return {"json": json.loads(msg["text"])}
  return {"bytes": msg["bytes"]}


def _expect_error(ws, code: int, words: str) -> str:
  """The session's one error message then its close code."""
  msg = _recv(ws)
  assert "json" in msg and msg["json"]["type"] == "error", msg
  assert words in msg["json"]["message"], msg["json"]["message"]
  assert _recv(ws)["close"] == code
  return msg["json"]["message"]


def _run_session(ws, pcm: np.ndarray, fmt: str, chunk: int = 3200):
  """start → ready → all audio → end; returns (ready, [(clip message, payload)], done)."""
  ws.send_text(_start(fmt))
  ready = _recv(ws)["json"]
  assert ready["type"] == "ready", ready
  for i in range(0, pcm.size, chunk):
    ws.send_bytes(pcm[i:i + chunk].tobytes())
  ws.send_text(json.dumps({"type": "end"}))
  clips = []
  while True:
    msg = _recv(ws)["json"]
    if msg["type"] == "done":
      assert _recv(ws)["close"] == 1000
      return ready, clips, msg
    assert msg["type"] == "clip", msg
    payload = _recv(ws)["bytes"]
    assert len(payload) == msg["bytes"]
    clips.append((msg, payload))


def test_raw_stream(engine, pipe):
  """ready carries the frame size; every clip's binary is m·H·W·3 bytes; frames follow on; done counts them all
  (floor(25 · seconds)); the frames are images, not zeros."""
  pcm = _speech(1.3)
  with _client(engine, pipe).websocket_connect("/v1/stream") as ws:
    ready, clips, done = _run_session(ws, pcm, "raw")
  size = pipe.config.resolution
  assert (ready["width"], ready["height"], ready["fps"]) == (size, size, 25)
  expected = audio_lib.num_video_frames(pcm.size)
  assert done["frames"] == expected == sum(c["frames"] for c, _ in clips)
  first = 0
  for c, payload in clips:
    assert c["first_frame"] == first and c["bytes"] == c["frames"] * size * size * 3
    first += c["frames"]
  frames = np.concatenate([np.frombuffer(p, np.uint8).reshape(-1, size, size, 3) for _, p in clips])
  assert frames.std() > 1.0


def test_fmp4_stream_decodes(engine, pipe, tmp_path):
  """fMP4: the first binary message starts with the init segment (ftyp, moov), every one holds a moof + mdat;
  concatenated they decode (ffmpeg) to exactly the session's frames, with an AAC audio track."""
  pcm = _speech(1.1)
  with _client(engine, pipe).websocket_connect("/v1/stream") as ws:
    ready, clips, done = _run_session(ws, pcm, "fmp4")
  assert ready["mime"] == fmp4.MIME
  kinds = [[k for k, _, _ in fmp4.boxes(p)] for _, p in clips]
  assert kinds[0] == ["ftyp", "moov", "moof", "mdat"]
  assert all(k == ["moof", "mdat"] for k in kinds[1:])
  path = tmp_path / "stream.mp4"
  path.write_bytes(b"".join(p for _, p in clips))
  out = subprocess.run([audio_lib.ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v", "-f", "rawvideo",
                        "-pix_fmt", "rgb24", "-"], capture_output=True)
  size = pipe.config.resolution
  assert out.stdout and len(out.stdout) == done["frames"] * size * size * 3
  assert "Audio: aac" in audio_lib.ffmpeg_streams(str(path))
  assert abs(audio_lib.load_audio(str(path)).size / SR - done["frames"] / 25) < 0.1


@pytest.mark.parametrize("first, code, words", [
  (b"\x00\x01", app_lib.UNSUPPORTED, "binary"),
  ('{"type": "end"}', app_lib.POLICY, "first message"),
  ("not json", app_lib.POLICY, "not valid JSON"),
  (_start(sample_rate=44100), app_lib.UNSUPPORTED, "sample_rate"),
  (_start(format="webm"), app_lib.UNSUPPORTED, "format"),
  (_start(portrait=base64.b64encode(b"GIF89a not really").decode()), app_lib.UNSUPPORTED, "not a PNG, JPEG or WebP"),
  (_start(portrait="%%%"), app_lib.UNSUPPORTED, "base64"),
  (_start(steps=0), app_lib.POLICY, "steps"),
  (_start(colour="red"), app_lib.POLICY, "unknown fields"),
])
def test_bad_start_closes_with_reason(engine, pipe, first, code, words):
  with _client(engine, pipe).websocket_connect("/v1/stream") as ws:
    if isinstance(first, bytes):
      ws.send_bytes(first)
    else:
      ws.send_text(first)
    _expect_error(ws, code, words)


def test_bad_session_beside_a_good_one(engine, pipe):
  """Each mid-session violation closes its own socket with its code while a concurrent good session goes on
  to the same frames it gives alone."""
  client = _client(engine, pipe, max_message_bytes=20_000, max_session_seconds=2.0)
  pcm = _speech(0.9, seed=3)
  with client.websocket_connect("/v1/stream") as good:
    good.send_text(_start("raw"))
    assert _recv(good)["json"]["type"] == "ready"
    good.send_bytes(pcm[:4000].tobytes())
    cases = [
      (lambda ws: ws.send_bytes(b"\x00" * 7), app_lib.UNSUPPORTED, "even byte count"),
      (lambda ws: ws.send_bytes(b"\x00" * 30_000), app_lib.TOO_BIG, "byte limit"),
      (lambda ws: ws.send_text('{"type": "pause"}'), app_lib.POLICY, "unexpected message type"),
      (lambda ws: [ws.send_bytes(np.zeros(8000, "<i2").tobytes()) for _ in range(5)], app_lib.POLICY,
       "max_session_seconds"),
    ]
    for act, code, words in cases:
      with client.websocket_connect("/v1/stream") as bad:
        bad.send_text(_start("raw"))
        assert _recv(bad)["json"]["type"] == "ready"
        act(bad)
        _expect_error(bad, code, words)
    for i in range(4000, pcm.size, 3200):
      good.send_bytes(pcm[i:i + 3200].tobytes())
    good.send_text(json.dumps({"type": "end"}))
    frames = []
    while True:
      msg = _recv(good)["json"]
      if msg["type"] == "done":
        break
      frames.append(_recv(good)["bytes"])
  with client.websocket_connect("/v1/stream") as alone:
    _, clips, done = _run_session(alone, pcm, "raw")
  assert msg["frames"] == done["frames"]
  together = np.frombuffer(b"".join(frames), np.uint8).astype(np.float32)
  single = np.frombuffer(b"".join(p for _, p in clips), np.uint8).astype(np.float32)
  assert together.shape == single.shape and np.abs(together - single).max() <= 2


def test_idle_timeout_and_cancel(engine, pipe):
  client = _client(engine, pipe, idle_timeout_seconds=0.5)
  with client.websocket_connect("/v1/stream") as ws:
    _expect_error(ws, app_lib.POLICY, "no start message")
  with client.websocket_connect("/v1/stream") as ws:
    ws.send_text(_start())
    assert _recv(ws)["json"]["type"] == "ready"
    _expect_error(ws, app_lib.POLICY, "idle")
  with client.websocket_connect("/v1/stream") as ws:
    ws.send_text(_start())
    assert _recv(ws)["json"]["type"] == "ready"
    ws.send_bytes(_speech(0.2).tobytes())
    ws.send_text('{"type": "cancel"}')
    while "close" not in (msg := _recv(ws)):
      if "json" in msg and msg["json"]["type"] == "done":
        assert msg["json"]["cancelled"] is True
    assert msg["close"] == 1000


def test_max_sessions(engine, pipe):
  client = _client(engine, pipe, max_sessions=1)
  with client.websocket_connect("/v1/stream") as first:
    first.send_text(_start())
    assert _recv(first)["json"]["type"] == "ready"
    with client.websocket_connect("/v1/stream") as second:
      second.send_text(_start())
      _expect_error(second, app_lib.TRY_LATER, "max_sessions")
    first.send_text('{"type": "cancel"}')


def test_default_portrait_health_metrics(engine, pipe):
  client = _client(engine, pipe)
  health = client.get("/healthz")
  assert health.status_code == 200 and health.json()["status"] == "ok"
  assert client.get("/readyz").json() == {"status": "ready"}
  info = client.get("/v1/info").json()
  assert (info["width"], info["fps"], info["steps"]) == (pipe.config.resolution, 25, engine.steps)
  assert client.get("/v1/portrait").content == _png(29, 31, seed=5)
  page = client.get("/")
  assert page.status_code == 200 and "/v1/stream" in (page.text + client.get("/static/app.js").text)
  with client.websocket_connect("/v1/stream") as ws:  # no portrait: the server's default
    ws.send_text(json.dumps({"type": "start", "sample_rate": SR}))
    assert _recv(ws)["json"]["type"] == "ready"
    for i in range(0, 12800, 3200):
      ws.send_bytes(_speech(0.8)[i:i + 3200].tobytes())
    ws.send_text('{"type": "end"}')
    while "close" not in _recv(ws):
      pass
  metrics = client.get("/metrics")
  assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
  values = metrics_lib.parse(metrics.text)
  assert values["read_sessions_active"] == 0 and values["read_sessions_total"] >= 1
  assert values["read_frames_total"] == 20 and values["read_block_latency_seconds_count"] >= 1
  assert values['read_sessions_closed_total{code="1000"}'] == 1 and values["read_realtime_factor"] > 0
  assert values["process_resident_memory_bytes"] > 0 and values["read_engine_lanes_alive"] == 1
  assert "# TYPE read_engine_units_total counter" in metrics.text  # engine counters typed as counters


def test_post_videos(engine, pipe, tmp_path):
  """POST /v1/videos answers an mp4 with floor(25 · seconds) frames and the speech; a bad upload is a 400 naming
  the field, never a server path; nothing is left in the temp folder."""
  client = _client(engine, pipe)
  wav = io.BytesIO()
  import wave
  with wave.open(wav, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(SR)
    w.writeframes(_speech(0.7).tobytes())
  before = set(os.listdir(tempfile.gettempdir()))
  r = client.post("/v1/videos", files={"portrait": ("me.png", _png()), "audio": ("speech.wav", wav.getvalue())},
                  data={"seed": "1"})
  assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
  out = tmp_path / "out.mp4"
  out.write_bytes(r.content)
  frames = subprocess.run([audio_lib.ffmpeg_exe(), "-i", str(out), "-map", "0:v", "-f", "rawvideo", "-pix_fmt",
                           "rgb24", "-"], capture_output=True).stdout
  size = pipe.config.resolution
  assert len(frames) == audio_lib.num_video_frames(int(0.7 * SR)) * size * size * 3
  bad = client.post("/v1/videos", files={"portrait": ("x.png", b"not an image"), "audio": ("a.wav", wav.getvalue())})
  assert bad.status_code == 400 and "portrait" in bad.json()["error"] and "read_jax_video_" not in bad.json()["error"]
  after = set(os.listdir(tempfile.gettempdir()))
  assert not [n for n in after - before if n.startswith("read_jax_")]


KEY = "app-test-key-0123456789"


def test_key_origin_and_host(engine, pipe):
  """With a key: every endpoint but the probes and the page needs it (Bearer, or the page's bearer.<key>
  subprotocol, never echoed); a foreign Origin is refused on the WebSocket and POST, a foreign Host everywhere
  but the probes; each refusal is counted by reason."""
  client = _client(engine, pipe, security=app_lib.Security(api_key=KEY, trusted_hosts=("testserver",)))
  auth = {"Authorization": f"Bearer {KEY}"}
  assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
  page = client.get("/")
  assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers["content-security-policy"]
  for path in ("/v1/info", "/v1/portrait", "/metrics"):
    r = client.get(path)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), path
    assert client.get(path, headers=auth).status_code == 200, path
  assert client.get("/v1/info", headers={"Authorization": "Bearer " + KEY[:-1] + "x"}).status_code == 401
  assert client.get("/v1/info", headers={**auth, "Host": "rebound.example"}).status_code == 400
  assert client.get("/healthz", headers={"Host": "10.1.2.3:8000"}).status_code == 200  # probes by pod IP
  post = client.post("/v1/videos", headers={**auth, "Origin": "https://elsewhere.example"},
                     files={"portrait": ("p.png", _png()), "audio": ("a.wav", b"RIFF")})
  assert post.status_code == 403 and "Origin" in post.json()["error"]

  for kwargs, status in [({}, 401), ({"headers": {**auth, "Origin": "https://elsewhere.example"}}, 403),
                         ({"subprotocols": ["read.v1", "bearer.wrong-key-0123456789"]}, 401)]:
    with pytest.raises(WebSocketDenialResponse) as denied:
      with client.websocket_connect("/v1/stream", **kwargs):
        pass
    assert denied.value.status_code == status, kwargs
  with client.websocket_connect("/v1/stream", subprotocols=["read.v1", f"bearer.{KEY}"],
                                headers={"Origin": "http://testserver"}) as ws:  # the page: its own origin
    assert ws.accepted_subprotocol == "read.v1"
    ws.send_text(_start())
    assert _recv(ws)["json"]["type"] == "ready"
    ws.send_text('{"type": "cancel"}')
  values = metrics_lib.parse(client.get("/metrics", headers=auth).text)
  assert values['read_refused_total{reason="auth"}'] == 6 and values['read_refused_total{reason="origin"}'] == 2
  assert values['read_refused_total{reason="host"}'] == 1
  other = _client(engine, pipe, security=app_lib.Security(api_key=KEY, trusted_hosts=("testserver",),
                                                          allowed_origins=("https://app.example.com",)))
  preflight = other.options("/v1/videos", headers={"Origin": "https://app.example.com",
                                                   "Access-Control-Request-Method": "POST",
                                                   "Access-Control-Request-Headers": "authorization"})
  assert preflight.status_code == 200  # a listed web app may POST from its pages (CORS), with the key
  assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
  assert other.options("/v1/videos", headers={"Origin": "https://elsewhere.example",
                                              "Access-Control-Request-Method": "POST"}).status_code == 400
  with other.websocket_connect("/v1/stream", headers={**auth, "Origin": "https://app.example.com"}) as ws:
    ws.send_text('{"type": "cancel"}')
    _expect_error(ws, app_lib.POLICY, "first message")
  with pytest.raises(ConfigError, match="api key"):
    app_lib.Security(api_key="short")
  with pytest.raises(ConfigError, match="allowed origin"):
    app_lib.Security(allowed_origins=("evil.example",))


def test_drain_refuses_new_work(engine, pipe):
  """While draining: /readyz 503, /healthz still 200, a new start 1013, a POST 503; open sessions go on."""
  client = _client(engine, pipe)
  state = client.app.state.serve
  with client.websocket_connect("/v1/stream") as open_ws:
    open_ws.send_text(_start())
    assert _recv(open_ws)["json"]["type"] == "ready"
    state.drain()
    assert client.get("/readyz").status_code == 503 and client.get("/healthz").status_code == 200
    with client.websocket_connect("/v1/stream") as ws:
      ws.send_text(_start())
      _expect_error(ws, app_lib.TRY_LATER, "draining")
    assert client.post("/v1/videos", files={"portrait": ("p.png", _png())}).status_code == 503
    open_ws.send_bytes(_speech(0.7).tobytes())
    open_ws.send_text('{"type": "end"}')
    while (msg := _recv(open_ws)).get("json", {}).get("type") != "done":
      assert "close" not in msg, msg
    state.shutdown_sessions("bye")  # nothing open any more: a no-op
  assert state.busy() == 0


def test_backpressure_pauses_a_session(engine):
  """A session opened with max_pending=1 gets one block and no more until the consumer says it was delivered;
  its audio keeps coming in meanwhile, and every block comes once delivered."""
  blocks, done = [], threading.Event()
  sid = engine.open(np.zeros((40, 40, 3), np.uint8), on_block=blocks.append, on_done=lambda n: done.set(),
                    max_pending=1)
  engine.feed(sid, _speech(3.0))
  engine.end(sid)
  deadline = time.time() + 60
  while not blocks and time.time() < deadline:
    time.sleep(0.05)
  time.sleep(0.5)  # time for more clips, were the session not paused
  assert len(blocks) == 1 and engine.stats()["paused_sessions"] == 1
  while not done.is_set() and time.time() < deadline:
    n = len(blocks)
    engine.delivered(sid)
    while len(blocks) == n and not done.is_set() and time.time() < deadline:
      time.sleep(0.01)
  assert done.is_set() and sum(b.frames.shape[0] for b in blocks) == audio_lib.num_video_frames(3 * SR)
  assert engine.stats()["sessions"] == 0 and engine.stats()["pending_blocks"] == 0


def test_lane_fault_restarts_then_dead_lane_fails_probes(engine, pipe):
  """A fault past the per-session guards (here a callback that raises) fails that lane's sessions and the lane
  restarts; a lane out of restarts is dead: /healthz and /readyz 503, new sessions refused with the reason."""
  errors = []

  def boom(block):
    raise RuntimeError("a bug in a callback")

  before = engine.stats()["lane_restarts_total"]
  sid = engine.open(np.zeros((40, 40, 3), np.uint8), on_block=boom, on_error=errors.append)
  engine.feed(sid, _speech(1.0))
  deadline = time.time() + 60
  while not errors and time.time() < deadline:
    time.sleep(0.05)
  assert errors and "a bug in a callback" in str(errors[0])
  stats = engine.stats()
  assert stats["lane_restarts_total"] == before + 1 and stats["lanes_alive"] == 1 and stats["sessions"] == 0
  with _client(engine, pipe).websocket_connect("/v1/stream") as ws:  # the restarted lane serves
    _, clips, done = _run_session(ws, _speech(0.7), "raw")
    assert done["frames"] == audio_lib.num_video_frames(int(0.7 * SR))

  fragile = engine_lib.Engine(pipe, batch_sizes=(1,), devices=jax.local_devices()[:1], max_lane_restarts=0).start()
  try:  # the programs are compiled already: this start only warms up
    client = _client(fragile, pipe)
    sid = fragile.open(np.zeros((40, 40, 3), np.uint8), on_block=boom)
    fragile.feed(sid, _speech(1.0))
    while not fragile.stats()["lanes_dead"] and time.time() < deadline:
      time.sleep(0.05)
    assert fragile.stats()["lanes_dead"] == 1
    assert client.get("/healthz").status_code == 503 and client.get("/readyz").status_code == 503
    with client.websocket_connect("/v1/stream") as ws:
      ws.send_text(_start())
      _expect_error(ws, app_lib.TRY_LATER, "no device lane")
  finally:
    fragile.stop()


def test_upload_decoders(tmp_path):
  """Portraits: PNG, JPEG and WebP only, size from the header; audio: plain containers only, length on the decoded
  samples (a playlist or concat list naming another file is refused; the same file named .m3u8 reads fine
  without the whitelist, which is load_audio's behaviour for local files)."""
  for fmt in ("PNG", "JPEG", "WEBP"):
    buf = io.BytesIO()
    Image.fromarray(np.full((23, 19, 3), 200, np.uint8)).save(buf, fmt)
    assert uploads.decode_portrait(buf.getvalue()).shape == (23, 19, 3)
  for fmt in ("GIF", "BMP", "TIFF"):
    buf = io.BytesIO()
    Image.fromarray(np.full((23, 19, 3), 200, np.uint8)).save(buf, fmt)
    with pytest.raises(MediaError, match="not a PNG, JPEG or WebP"):
      uploads.decode_portrait(buf.getvalue())
  with pytest.raises(MediaError, match="over the 0.0004-megapixel limit"):
    uploads.decode_portrait(_png(), max_pixels=400)

  secret = tmp_path / "secret.wav"
  secret.write_bytes(_wav_bytes(_speech(0.5)))
  playlist = tmp_path / "x.m3u8"
  playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:0.1,\n{secret}\n#EXT-X-ENDLIST\n")
  concat = tmp_path / "list"
  concat.write_text(f"ffconcat version 1.0\nfile '{secret}'\n")
  for path in (playlist, concat):
    with pytest.raises(AudioError, match="not a plain audio or video file"):
      audio_lib.load_audio(str(path), containers=audio_lib.PLAIN_CONTAINERS)
  assert audio_lib.load_audio(str(secret), containers=audio_lib.PLAIN_CONTAINERS).size == int(0.5 * SR)
  with pytest.raises(AudioError, match="longer than the 0.25 s limit"):
    audio_lib.load_audio(str(secret), max_seconds=0.25)
  webm = tmp_path / "a.webm"
  subprocess.run([audio_lib.ffmpeg_exe(), "-v", "error", "-i", str(secret), "-c:a", "libopus", str(webm)], check=True)
  with pytest.raises(AudioError, match="longer than the 0.25 s limit"):  # the ffmpeg path stops too
    audio_lib.load_audio(str(webm), containers=audio_lib.PLAIN_CONTAINERS, max_seconds=0.25)


def test_json_log_lines():
  """--log-json: one JSON object per event, its fields as keys (the session id among them)."""
  record = logging.LogRecord("read_jax.serve", logging.WARNING, __file__, 1, "session.close", None, None)
  record.fields = {"session": "3f2a9c01b7d4", "code": 1008, "reason": "idle"}
  line = json.loads(logs.JsonFormatter().format(record))
  assert line["event"] == "session.close" and line["session"] == "3f2a9c01b7d4" and line["code"] == 1008
  assert line["level"] == "warning" and "\n" not in logs.JsonFormatter().format(record)


def _wav_bytes(pcm: np.ndarray) -> bytes:
  buf = io.BytesIO()
  import wave
  with wave.open(buf, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(SR)
    w.writeframes(pcm.tobytes())
  return buf.getvalue()
