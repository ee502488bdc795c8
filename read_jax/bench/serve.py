"""Live sessions through the server: k clients at real speed, batched vs one clip per call; one long session.

  python scripts/bench.py serve                              # the bundled demo: 1, 2, 4, 8 sessions, 8 s each
  python scripts/bench.py serve --sessions 1,4 --seconds 20 --json serve.json
  python scripts/bench.py serve --sessions 8 --admission     # as scripts/serve.py admits: the rest refused
  python scripts/bench.py serve --minutes 1,5,10             # one 10-minute session: latency and memory per mark
  python scripts/bench.py serve --url ws://127.0.0.1:8000/v1/stream --sessions 2   # a server already running
  python scripts/bench.py serve --load                       # bounded load: 200 dropped connections, 50 POSTs

Without ``--url`` each run starts its own server in this process (``scripts/serve.py``'s app and engine on
127.0.0.1 and a free port) — once with batch sizes up to k (the serving default), once with batch size 1 only
(every clip its own call, as k independent pipelines would run) — and k WebSocket clients send the demo speech
as PCM16 in 20 ms chunks at the speed it is spoken (raw frames back). Per frame, the latency is the moment its
block reached the client minus the moment the frame's instant was spoken (``read_jax.live.run_live``'s
definition); the table gives the first frame's (worst over sessions), the worst and the mean over every frame
of every session, and the real-time factor: wall seconds from the first audio to the last ``done`` over the
seconds of speech. ``--minutes``: one session of the longest mark, the latency of the frames in each stretch
and the server's resident memory (this process: server and client) at each mark. ``--load``: the bounded load
of :mod:`read_jax.bench.serve_load` instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time

import numpy as np

from read_jax import audio as audio_lib
from read_jax import cli
from read_jax.bench import serve_load
from read_jax.bench.long import memory_mib
from read_jax.bench.timing import print_table
from read_jax.errors import ConfigError
from read_jax.live import CHUNK_MS
from read_jax.pipeline import ReadPipeline
from read_jax.serve.engine import Engine

try:
  from read_jax.serve.app import Limits, create_app
except ImportError:  # the serve extra (FastAPI) is missing: every other benchmark still runs
  Limits = create_app = None

DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "assets",
                        "demo")


def add_args(p):
  p.add_argument("--ckpt", default=DEMO_DIR, help="read_jax checkpoint directory (the in-process server's model)")
  p.add_argument("--url", default="", help="a running server's ws://…/v1/stream ('' starts one here)")
  p.add_argument("--sessions", default="1,2,4,8", help="comma-separated numbers of concurrent sessions")
  p.add_argument("--seconds", type=float, default=8.0, help="speech per session (the demo speech, tiled)")
  p.add_argument("--mode", default=None, choices=("clip", "rolling", "causal"),
                 help="the in-process server's live mode (default: the checkpoint's live_mode, as scripts/serve.py)")
  p.add_argument("--minutes", default="", help="instead: one session this long, marks in minutes (e.g. 1,5,10)")
  p.add_argument("--admission", action="store_true",
                 help="admit sessions by the start-up timings as scripts/serve.py does (real-time margin 0.9): the "
                      "table covers the admitted sessions and counts the refused, with the server's reason "
                      "(default: off, every session admitted, to show what over-admission does)")
  serve_load.add_args(p)


# ---------------------------------------------------------------------------------------------
# The client side


async def _session(url: str, portrait: bytes, pcm: np.ndarray, clock: dict, marks=(), on_mark=None,
                   api_key: str = "", refusable: bool = False) -> dict:
  """One client at real speed: per-frame latencies [F] and the done message's frame count (``refusable``: a
  refusal is returned, ``{"refused": the server's error message}``, instead of raised)."""
  import websockets  # the serve extra

  chunk = audio_lib.SAMPLE_RATE * CHUNK_MS // 1000
  fps = 25
  headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
  async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
    await ws.send(json.dumps({"type": "start", "portrait": base64.b64encode(portrait).decode(),
                              "sample_rate": audio_lib.SAMPLE_RATE, "format": "raw"}))
    ready = json.loads(await ws.recv())
    if ready.get("type") != "ready":
      if refusable and ready.get("type") == "error":
        return {"refused": ready}
      raise RuntimeError(f"server refused the session: {ready}")
    start = clock.setdefault("start", time.perf_counter())

    async def send():
      for lo in range(0, pcm.size, chunk):
        await asyncio.sleep(max(0.0, (lo + chunk) / audio_lib.SAMPLE_RATE - (time.perf_counter() - start)))
        await ws.send(pcm[lo:lo + chunk].tobytes())
      await ws.send(json.dumps({"type": "end"}))

    sender = asyncio.create_task(send())
    latencies, next_mark = [], 0
    while True:
      msg = json.loads(await ws.recv())
      if msg["type"] == "done":
        break
      if msg["type"] != "clip":
        raise RuntimeError(f"server error: {msg}")
      await ws.recv()  # the frames
      now = time.perf_counter() - start
      first = msg["first_frame"]
      latencies.append(now - np.arange(first, first + msg["frames"]) / fps)
      while next_mark < len(marks) and first + msg["frames"] >= marks[next_mark] * 60 * fps:
        on_mark(next_mark, np.concatenate(latencies))
        next_mark += 1
    await sender
    clock["end"] = time.perf_counter()
  return {"latency": np.concatenate(latencies), "frames": msg["frames"]}


def _clients(url, portrait, waves, **kwargs) -> tuple[list, dict]:
  clock: dict = {}

  async def all_sessions():
    return await asyncio.gather(*(_session(url, portrait, w, clock, **kwargs) for w in waves))

  return asyncio.run(all_sessions()), clock


# ---------------------------------------------------------------------------------------------
# The server side (in this process)


class _Server:
  """scripts/serve.py's app around a started engine, on 127.0.0.1 and a free port, in a thread."""

  def __init__(self, pipe, portrait: bytes, batch_sizes, max_sessions: int, seconds: float, mode: str | None = None,
               admission: bool = False):
    self.engine = Engine(pipe, batch_sizes=batch_sizes, max_sessions=max_sessions,
                         realtime_margin=0.9 if admission else None, mode=mode).start()
    self.busy0 = self.busy()  # the start-up's warm-up rounds
    limits = Limits(max_sessions=max_sessions, max_session_seconds=seconds + 60, idle_timeout_seconds=60,
                    max_session_wall_seconds=seconds + 180)
    app = create_app(self.engine, pipe, limits, default_portrait=portrait)
    self.http = serve_load.ThreadedServer(app, log_level="warning", ws_max_size=64 << 20)
    self.url = f"ws://127.0.0.1:{self.http.port}/v1/stream"

  def busy(self) -> float:
    stats = self.engine.stats()
    return stats["busy_seconds_total"] + stats["speech_seconds_total"]

  def close(self):
    self.http.close()
    self.engine.stop()


# ---------------------------------------------------------------------------------------------


def _speech(ckpt: str, seconds: float) -> np.ndarray:
  wave = audio_lib.load_audio(os.path.join(ckpt, "speech.wav"))
  n = int(seconds * audio_lib.SAMPLE_RATE)
  wave = np.tile(wave, int(np.ceil(n / wave.size)))[:n]
  return (np.clip(wave, -1, 1) * 32767).astype("<i2")


def run(args) -> dict:
  if args.load:
    return serve_load.run(args)
  if create_app is None:
    raise ConfigError("bench serve: needs the serve extra (pip install -e '.[serve]')")
  cli.compilation_cache()
  with open(os.path.join(args.ckpt, "reference.png"), "rb") as f:
    portrait = f.read()
  pipe = None if args.url else ReadPipeline.from_pretrained(args.ckpt)
  if args.minutes:
    return _long(args, pipe, portrait)
  counts = sorted({int(k) for k in args.sessions.split(",")})
  pcm = _speech(args.ckpt, args.seconds)
  rows, out = [], {"seconds": args.seconds, "runs": {}}
  for k in counts:
    modes = [("server's", None)] if args.url else [
      ("batched", sorted({b for b in (1, 2, 4, 8, k) if b <= k})), ("one per call", [1])]
    for label, batch_sizes in modes:
      server = None if args.url else _Server(pipe, portrait, batch_sizes, k, args.seconds, args.mode, args.admission)
      try:
        results, clock = _clients(args.url or server.url, portrait, [pcm] * k, api_key=args.api_key,
                                  refusable=args.admission or bool(args.url))
        busy = server.busy() - server.busy0 if server else None
      finally:
        if server is not None:
          server.close()
      admitted = [x for x in results if "latency" in x]
      refused = [x["refused"] for x in results if "refused" in x]
      if not admitted:
        raise RuntimeError(f"the server admitted none of {k} sessions: {refused[0]}")
      every = np.concatenate([x["latency"] for x in admitted])
      r = {"admitted": len(admitted), "refused": len(refused), "refusal": refused[0] if refused else None,
           "first_s": float(max(x["latency"][0] for x in admitted)), "worst_s": float(every.max()),
           "mean_s": float(every.mean()), "rtf": (clock["end"] - clock["start"]) / args.seconds,
           "frames": int(every.size), "batch_sizes": batch_sizes,
           "engine_s_per_speech_s": None if busy is None else busy / (len(admitted) * args.seconds)}
      out["runs"][f"{k}:{label}"] = r
      rows.append({"sessions": k, "admitted": len(admitted), "clips": label, "first frame s": r["first_s"],
                   "worst s": r["worst_s"], "mean s": r["mean_s"], "real-time factor": r["rtf"],
                   "engine s / speech s": r["engine_s_per_speech_s"]})
  print_table(rows, ["sessions", "admitted", "clips", "first frame s", "worst s", "mean s", "real-time factor",
                     "engine s / speech s"])
  for run in out["runs"].values():
    if run["refusal"]:
      print(f"refused ({run['refused']}): {run['refusal'].get('code')} {run['refusal'].get('message')}")
      break
  return out


def _long(args, pipe, portrait) -> dict:
  marks = sorted({float(m) for m in args.minutes.split(",")})
  seconds = 60 * marks[-1]
  pcm = _speech(args.ckpt, seconds + 0.5)
  server = None if args.url else _Server(pipe, portrait, [1], 1, seconds + 1, args.mode)
  rows, seen = [], [0]
  t0 = time.perf_counter()

  def on_mark(i, latency):
    stretch = latency[seen[0]:]
    seen[0] = latency.size
    mem = memory_mib()
    rows.append({"minutes": marks[i], "frames": int(latency.size), "worst s": float(stretch.max()),
                 "mean s": float(stretch.mean()), "rss MiB": mem["rss_mib"], "anon MiB": mem["anon_mib"],
                 "wall s": time.perf_counter() - t0})
    print(f"[serve] {marks[i]:g} min: worst {stretch.max():.2f} s, mean {stretch.mean():.2f} s, "
          f"RSS {mem['rss_mib']:.0f} MiB", flush=True)

  try:
    (result,), _ = _clients(args.url or server.url, portrait, [pcm], marks=marks, on_mark=on_mark,
                            api_key=args.api_key)
  finally:
    if server is not None:
      server.close()
  print_table(rows, ["minutes", "frames", "worst s", "mean s", "rss MiB", "anon MiB", "wall s"])
  return {"marks": rows, "frames": result["frames"], "first_s": float(result["latency"][0])}
