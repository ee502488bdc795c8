"""Several live sessions on one device: batched (one call per round of ready clips) vs one clip per call.

  python scripts/bench.py serve                          # the bundled demo: 1, 2 and 4 sessions, 8 s of speech each
  python scripts/bench.py serve --sessions 1,3 --seconds 20 --json serve.json

For each session count k, k sessions of the engine (read_jax.serve.engine, no HTTP) are fed the demo speech
at real speed in 20 ms chunks, side by side, once with batch sizes up to k (the serving default) and once with
batch size 1 only (every clip its own call, as k independent pipelines would run). Per frame, the latency is the
moment its block came out minus the moment the frame's instant was spoken (``read_jax.live.run_live``'s
definition); the table gives the first frame's, the worst and the mean over every frame of every session,
and the engine's busy seconds (speech features, denoising, decoding) per second of speech of all sessions
together (below 1: real time held).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from read_jax import audio as audio_lib
from read_jax import cli
from read_jax.bench.timing import print_table
from read_jax.live import CHUNK_MS
from read_jax.pipeline import ReadPipeline
from read_jax.serve.engine import Engine

DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "assets",
                        "demo")


def add_args(p):
  p.add_argument("--ckpt", default=DEMO_DIR, help="read_jax checkpoint directory")
  p.add_argument("--sessions", default="1,2,4", help="comma-separated session counts")
  p.add_argument("--seconds", type=float, default=8.0, help="speech per session (the demo speech, tiled)")


def run_sessions(engine: Engine, portrait, waves) -> dict:
  """Feed ``waves`` (one per session) at real speed; per-frame latencies and the device's busy time."""
  chunk = audio_lib.SAMPLE_RATE * CHUNK_MS // 1000
  lat = {i: [] for i in range(len(waves))}
  finished = threading.Event()
  done = set()
  start = [0.0]

  def on_block(i, block):
    lat[i].append(time.perf_counter() - start[0] - block.times)

  def on_done(i, _):
    done.add(i)
    if len(done) == len(waves):
      finished.set()

  sids = [engine.open(portrait, seed=i, on_block=lambda b, i=i: on_block(i, b), on_done=lambda n, i=i: on_done(i, n))
          for i in range(len(waves))]
  busy0 = engine.stats()["busy_seconds_total"] + engine.stats()["speech_seconds_total"]
  start[0] = time.perf_counter()
  longest = max(w.size for w in waves)
  for lo in range(0, longest, chunk):
    time.sleep(max(0.0, (lo + chunk) / audio_lib.SAMPLE_RATE - (time.perf_counter() - start[0])))
    for sid, w in zip(sids, waves):
      if lo < w.size:
        engine.feed(sid, w[lo:lo + chunk])
  for sid in sids:
    engine.end(sid)
  finished.wait(600)
  frames = [np.concatenate(v) for v in lat.values()]
  every = np.concatenate(frames)
  busy = engine.stats()["busy_seconds_total"] + engine.stats()["speech_seconds_total"] - busy0
  speech = sum(w.size for w in waves) / audio_lib.SAMPLE_RATE
  return {"first_s": float(max(f[0] for f in frames)), "worst_s": float(every.max()), "mean_s": float(every.mean()),
          "device_s_per_speech_s": busy / speech, "frames": int(every.size)}


def run(args) -> dict:
  counts = sorted({int(k) for k in args.sessions.split(",")})
  cli.compilation_cache()
  pipe = ReadPipeline.from_pretrained(args.ckpt)
  wave = audio_lib.load_audio(os.path.join(args.ckpt, "speech.wav"))
  wave = np.tile(wave, int(np.ceil(args.seconds * audio_lib.SAMPLE_RATE / wave.size)))[
    :int(args.seconds * audio_lib.SAMPLE_RATE)]
  portrait = os.path.join(args.ckpt, "reference.png")
  rows, out = [], {"seconds": args.seconds, "clip_frames": pipe.config.clip_frames, "runs": {}}
  for k in counts:
    sizes = sorted({b for b in (1, 2, 4, 8, k) if b <= k})
    for label, batch_sizes in (("batched", sizes), ("one per call", [1])):
      engine = Engine(pipe, batch_sizes=batch_sizes, max_sessions=k, realtime_margin=None).start()
      try:
        r = run_sessions(engine, portrait, [wave] * k)
        r["clip_seconds"] = {b: engine.stats()[f"batch{b}_clip_seconds"] for b in batch_sizes}
      finally:
        engine.stop()
      out["runs"][f"{k}:{label}"] = r
      rows.append({"sessions": k, "clips": label, "first frame s": r["first_s"], "worst s": r["worst_s"],
                   "mean s": r["mean_s"], "device s / speech s": r["device_s_per_speech_s"]})
  print_table(rows, ["sessions", "clips", "first frame s", "worst s", "mean s", "device s / speech s"])
  return out
