"""A bounded load on the server (``python scripts/bench.py serve --load``): connections opened and dropped, POSTs
at once, requests without the key, while one good live session runs at real speed.

  python scripts/bench.py serve --load                                   # the demo, an in-process server
  python scripts/bench.py serve --load --connections 200 --posts 50 --concurrency 20 --json load.json
  python scripts/bench.py serve --load --url ws://127.0.0.1:8000/v1/stream --api-key KEY   # a running server

Phases, one after another, each with ``--concurrency`` clients at once:

* ``drop``: ``--connections`` WebSockets that send a start and go away without a word as soon as they are
  answered (ready, or refused as busy); every third leaves before the answer.
* ``post``: ``--posts`` POST /v1/videos of 2 s of speech; the server takes ``max_videos`` at a time, the rest
  are answered 429 at once.
* ``no key``: ``--connections`` GET /v1/info without the key (401).

Per phase: the answers by status or close code, the median and 99th percentile of their latency, and the wall
time. Around them: the good session's frames and worst block latency, and the server's sessions, send queues,
threads and resident memory from /metrics before and after (an in-process server shares this process: its
memory and threads include the client's).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import io
import json
import logging
import os
import secrets
import socket
import threading
import time
import wave

import numpy as np

from read_jax import audio as audio_lib
from read_jax import cli
from read_jax.bench.timing import print_table
from read_jax.errors import ConfigError
from read_jax.pipeline import ReadPipeline
from read_jax.serve.engine import Engine

try:  # the serve extra (FastAPI, uvicorn, httpx, websockets) is missing: every other benchmark still runs
  import httpx
  import uvicorn
  import websockets

  from read_jax.serve import metrics as metrics_lib
  from read_jax.serve.app import Limits, Security, create_app
except ImportError:
  httpx = uvicorn = websockets = None

GOOD_SECONDS = 20.0  # the good session's speech, fed at real speed across the phases (repeated if they last longer)


def add_args(p):
  p.add_argument("--load", action="store_true", help="instead: the bounded load of read_jax/bench/serve_load.py")
  p.add_argument("--connections", type=int, default=200, help="--load: WebSockets opened and dropped")
  p.add_argument("--posts", type=int, default=50, help="--load: POST /v1/videos")
  p.add_argument("--concurrency", type=int, default=20, help="--load: clients at once in each phase")
  p.add_argument("--api-key", default="", help="with --url: the server's key")


class ThreadedServer:
  """An app under uvicorn on 127.0.0.1 and a free port, in a daemon thread: the benchmarks' in-process server."""

  def __init__(self, app, **config):
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      self.port = s.getsockname()[1]
    self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, ws_per_message_deflate=False,
                                                **config))
    self.server.install_signal_handlers = False
    self.thread = threading.Thread(target=self.server.run, daemon=True)
    self.thread.start()
    deadline = time.time() + 60
    while not self.server.started and time.time() < deadline:
      time.sleep(0.05)
    if not self.server.started:
      raise RuntimeError("the benchmark's server did not start")

  def close(self):
    self.server.should_exit = True
    self.thread.join(10)


class _Server:
  """scripts/serve.py's app (a key, the default limits, the connection cap) on 127.0.0.1 and a free port."""

  def __init__(self, pipe, portrait: bytes, key: str):
    self.engine = Engine(pipe, batch_sizes=(1,), max_sessions=6).start()
    limits = Limits(max_sessions=4, max_videos=2)
    log = logging.getLogger("read_jax.serve.bench")  # thousands of refusals: counted in /metrics, not printed
    log.addHandler(logging.NullHandler())
    log.propagate = False
    app = create_app(self.engine, pipe, limits, default_portrait=portrait, security=Security(api_key=key), log=log)
    self.http = ThreadedServer(app, log_level="critical", limit_concurrency=256,
                               ws_max_size=limits.max_message_bytes + 4096)
    self.port = self.http.port

  def close(self):
    self.http.close()
    self.engine.stop()


def _wav(pcm: np.ndarray) -> bytes:
  buf = io.BytesIO()
  with wave.open(buf, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(audio_lib.SAMPLE_RATE)
    w.writeframes(pcm.tobytes())
  return buf.getvalue()


async def _bounded(n: int, concurrency: int, one) -> tuple[list, float]:
  """``one(i)`` for i < n, ``concurrency`` at a time: ([(outcome, seconds)], wall seconds)."""
  gate = asyncio.Semaphore(concurrency)

  async def run(i):
    async with gate:
      t0 = time.perf_counter()
      outcome = await one(i)
      return outcome, time.perf_counter() - t0

  t0 = time.perf_counter()
  results = await asyncio.gather(*(run(i) for i in range(n)))
  return results, time.perf_counter() - t0


async def _drop(url: str, headers: dict, start: str, i: int):
  """Open, start, and leave at once (every third before the answer): the close code seen, or 'ready'."""
  try:
    ws = await websockets.connect(url, additional_headers=headers, max_size=None, open_timeout=30)
  except websockets.InvalidStatus as e:
    return f"http {e.response.status_code}"
  except (OSError, asyncio.TimeoutError) as e:
    return type(e).__name__
  try:
    await ws.send(start)
    if i % 3 == 2:
      return "left before the answer"
    msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
    return "ready" if msg["type"] == "ready" else f"close {msg.get('code')}"
  except websockets.ConnectionClosed as e:
    return f"close {e.rcvd.code if e.rcvd else 1006}"
  finally:
    ws.transport.abort()  # no close handshake: the client vanishes


async def _good_session(url: str, headers: dict, start: str, pcm: np.ndarray, stop: asyncio.Event) -> dict:
  """One client at real speed until ``stop``, then end: frames, worst block latency, the done count."""
  chunk = audio_lib.SAMPLE_RATE // 50  # 20 ms
  async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
    await ws.send(start)
    ready = json.loads(await ws.recv())
    if ready["type"] != "ready":
      raise RuntimeError(f"the good session was refused: {ready}")
    t0 = time.perf_counter()

    async def send():
      i = 0
      while not stop.is_set():
        await asyncio.sleep(max(0.0, (i + 1) * 0.02 - (time.perf_counter() - t0)))
        lo = (i * chunk) % (pcm.size - chunk)
        await ws.send(pcm[lo:lo + chunk].tobytes())
        i += 1
      await ws.send(json.dumps({"type": "end"}))
      return i * chunk

    sender = asyncio.create_task(send())
    frames, worst = 0, 0.0
    while True:
      msg = json.loads(await ws.recv())
      if msg["type"] == "done":
        break
      if msg["type"] != "clip":
        raise RuntimeError(f"the good session failed: {msg}")
      await ws.recv()
      frames += msg["frames"]
      worst = max(worst, msg["latency"] or 0.0)
    samples = await sender
    return {"frames": frames, "done": msg["frames"], "expected": audio_lib.num_video_frames(samples),
            "worst_latency_s": worst}


def _summary(name: str, results: list, wall: float) -> dict:
  counts = collections.Counter(outcome for outcome, _ in results)
  seconds = np.array([s for _, s in results])
  outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
  return {"phase": name, "requests": len(results), "outcomes": outcomes,
          "p50 s": float(np.percentile(seconds, 50)), "p99 s": float(np.percentile(seconds, 99)), "wall s": wall}


async def _load(args, base: str, url: str, key: str, portrait: bytes, pcm: np.ndarray) -> dict:
  headers = {"Authorization": f"Bearer {key}"}
  start = json.dumps({"type": "start", "portrait": base64.b64encode(portrait).decode(), "format": "raw"})
  out = {}
  async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=args.concurrency)) as http:

    async def metrics():
      r = await http.get(base + "/metrics", headers=headers)
      return metrics_lib.parse(r.text)

    out["before"] = await metrics()
    stop = asyncio.Event()
    good = asyncio.create_task(_good_session(url, headers, start, pcm, stop))
    await asyncio.sleep(0.5)
    rows = []
    results, wall = await _bounded(args.connections, args.concurrency, lambda i: _drop(url, headers, start, i))
    rows.append(_summary("drop", results, wall))
    files = {"portrait": ("p.png", portrait), "audio": ("a.wav", _wav(pcm[:2 * audio_lib.SAMPLE_RATE]))}

    async def post(i):
      r = await http.post(base + "/v1/videos", headers=headers, files=files)
      return f"http {r.status_code}"

    results, wall = await _bounded(args.posts, args.concurrency, post)
    rows.append(_summary("post", results, wall))

    async def no_key(i):
      r = await http.get(base + "/v1/info")
      return f"http {r.status_code}"

    results, wall = await _bounded(args.connections, args.concurrency, no_key)
    rows.append(_summary("no key", results, wall))
    stop.set()
    out["good"] = await good
    await asyncio.sleep(1.0)  # the dropped sessions' slots free as their sockets are seen closed
    out["after"] = await metrics()
  out["phases"] = rows
  return out


def run(args) -> dict:
  if websockets is None:
    raise ConfigError("bench serve --load: needs the serve extra (pip install -e '.[serve]')")
  with open(os.path.join(args.ckpt, "reference.png"), "rb") as f:
    portrait = f.read()
  wave_ = audio_lib.load_audio(os.path.join(args.ckpt, "speech.wav"))
  n = int(GOOD_SECONDS * audio_lib.SAMPLE_RATE)
  pcm = (np.clip(np.tile(wave_, -(-n // wave_.size))[:n], -1, 1) * 32767).astype("<i2")
  server = None
  if args.url:
    key, url = args.api_key, args.url
  else:
    cli.compilation_cache()
    key = secrets.token_urlsafe(24)
    server = _Server(ReadPipeline.from_pretrained(args.ckpt), portrait, key)
    url = f"ws://127.0.0.1:{server.port}/v1/stream"
  base = url.replace("ws://", "http://").replace("wss://", "https://").rsplit("/v1/stream", 1)[0]
  try:
    out = asyncio.run(_load(args, base, url, key, portrait, pcm))
  finally:
    if server is not None:
      server.close()
  print_table(out["phases"], ["phase", "requests", "outcomes", "p50 s", "p99 s", "wall s"])
  before, after, good = out["before"], out["after"], out["good"]
  keys = ("read_sessions_active", "read_engine_sessions", "read_send_queue_blocks", "read_videos_admitted",
          "read_threads", "process_resident_memory_bytes")
  rows = [{"metric": k, "before": before.get(k), "after": after.get(k)} for k in keys]
  print_table(rows, ["metric", "before", "after"])
  print(f"good session: {good['frames']} frames sent, done {good['done']} (expected {good['expected']}), worst block "
        f"latency {good['worst_latency_s']:.2f} s")
  out["ok"] = (good["frames"] == good["done"] == good["expected"] and after.get("read_sessions_active") == 0 and
               after.get("read_send_queue_blocks") == 0 and after.get("read_videos_admitted") == 0)
  return out
