"""Live latency, clip mode vs the rolling window vs the causal window side by side: speech fed at real speed, frames
timed on arrival.

For each mode (``--modes``, e.g. ``clip,rolling:1,rolling:2,causal``; ``rolling:W`` has W noisy frames; ``causal``
is the KV-cached window of a causal student, ``--causal-ckpt``, read_jax/ans/causal.py) a
:class:`read_jax.live.LiveSession` is fed ``--seconds`` of speech in 20 ms chunks at real speed
(``live.run_live``), after one warm-up session that compiles every shape. Reported per mode: the latency of the
first frame, the worst and the mean (a frame's arrival minus the moment its instant was spoken) and the
real-time factor (seconds of compute per second of speech, from a run over the first ``--rtf-seconds`` fed as
fast as it goes; < 1 keeps up). ``--eval N`` adds the demo's held-out scores (read_jax/eval/demo.py, the synthetic set, N clips of 8 s):
lip sync, colour error, boundary ratios and flicker, the same evaluation for every mode.

The speech is the checkpoint's bundled ``speech.wav`` repeated with 0.6 s pauses to ``--seconds``. Runs of a
minute or more also report each minute's stretch (worst and mean latency, resident memory at its end), the
"long sessions stay flat" check: ``--seconds 600 --modes rolling:1`` is 10 minutes live.
"""

from __future__ import annotations

import os
import time

import numpy as np

from read_jax import audio as audio_lib
from read_jax import live
from read_jax.bench.timing import print_table
from read_jax.eval import demo
from read_jax.errors import InputError
from read_jax.pipeline import ReadPipeline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "assets", "demo")
DEMO_LIVE = os.path.join(ROOT, "assets", "demo_live")  # the demo's causal student


def add_args(p):
  p.add_argument("--ckpt", default=DEMO, help="checkpoint directory (default: the bundled demo)")
  p.add_argument("--modes", default="clip,rolling:1,causal",
                 help="comma-separated: clip, rolling:<noisy>, causal")
  p.add_argument("--causal-ckpt", default="",
                 help="the causal student the causal mode runs (default: with the bundled demo, its live model "
                      "assets/demo_live; else --ckpt)")
  p.add_argument("--seconds", type=float, default=20.0, help="seconds of speech per live run")
  p.add_argument("--steps", type=int, default=None, help="denoiser passes per frame (default: the checkpoint's)")
  p.add_argument("--decode-context", type=int, default=None, help="rolling: latent frames decoded together")
  p.add_argument("--rtf-seconds", type=float, default=30.0,
                 help="seconds of the speech timed as fast as it goes for the real-time factor")
  p.add_argument("--eval", type=int, default=0, help="also score N held-out clips per mode (0: no scores)")


def parse_modes(text: str) -> list[tuple[str, dict]]:
  """"clip,rolling:2" → [("clip", {"mode": "clip"}), ("rolling:2", {"mode": "rolling", "noisy": 2})]."""
  out = []
  for item in filter(None, (m.strip() for m in text.split(","))):
    mode, _, noisy = item.partition(":")
    if mode == "clip" and not noisy:
      out.append((item, {"mode": "clip"}))
    elif mode == "rolling" and noisy.isdigit() and int(noisy) >= 1:
      out.append((item, {"mode": "rolling", "noisy": int(noisy)}))
    elif mode == "causal" and not noisy:
      out.append((item, {"mode": "causal"}))
    else:
      raise InputError(f"--modes: {item!r} is not 'clip', 'rolling:<noisy frames>' or 'causal'")
  if not out:
    raise InputError("--modes: need at least one mode")
  return out


def speech_of_length(path: str, seconds: float) -> np.ndarray:
  """``path``'s speech repeated with 0.6 s pauses, cut to ``seconds``."""
  wave = audio_lib.load_audio(path)
  gap = np.zeros(int(0.6 * audio_lib.SAMPLE_RATE), np.float32)
  reps = int(np.ceil(seconds * audio_lib.SAMPLE_RATE / (wave.shape[0] + gap.shape[0])))
  return np.concatenate([np.concatenate([wave, gap])] * reps)[:int(seconds * audio_lib.SAMPLE_RATE)]


def run(args) -> dict:
  modes = parse_modes(args.modes)
  teacher = ReadPipeline.from_pretrained(args.ckpt)
  if not args.causal_ckpt and os.path.abspath(args.ckpt) == DEMO and os.path.isdir(DEMO_LIVE):
    args.causal_ckpt = DEMO_LIVE
  student = ReadPipeline.from_pretrained(args.causal_ckpt) if args.causal_ckpt else teacher
  portrait = os.path.join(args.ckpt, "reference.png")
  wave = speech_of_length(os.path.join(args.ckpt, "speech.wav"), args.seconds)
  rows, result = [], {"ckpt": args.ckpt, "causal_ckpt": args.causal_ckpt or args.ckpt, "seconds": args.seconds,
                      "modes": {}}
  for name, kw in modes:
    pipe = student if kw["mode"] == "causal" else teacher
    if kw["mode"] != "clip" and args.decode_context is not None:
      kw = dict(kw, decode_context=args.decode_context)
    kw = dict(kw, steps=args.steps)
    live.run_live(pipe, portrait, wave[:3 * audio_lib.SAMPLE_RATE], realtime=False, **kw)  # compile everything
    t0 = time.perf_counter()
    fast = live.run_live(pipe, portrait, wave[:int(args.rtf_seconds * audio_lib.SAMPLE_RATE)], realtime=False, **kw)
    rtf = (time.perf_counter() - t0) / fast.audio_seconds
    minutes = MinuteStats()
    stats = live.run_live(pipe, portrait, wave, realtime=True, on_block=minutes.on_block, **kw)
    entry = {"first_s": stats.first, "worst_s": stats.worst, "mean_s": stats.mean, "rtf": rtf,
             "blocks": stats.blocks, "frames": stats.frames, "minutes": minutes.rows()}
    row = {"mode": name, "first s": stats.first, "worst s": stats.worst, "mean s": stats.mean, "RTF": rtf,
           "blocks": stats.blocks}
    if args.eval:
      sample = {k: v for k, v in kw.items() if v is not None}
      s = demo.evaluate(pipe, num=args.eval, light=True, progress=True, **sample)["summary"]
      entry["scores"] = {k: s[k] for k in ("lip_sync", "colour_error", "boundary_ratio_ans", "boundary_ratio_latent",
                                           "flicker", "mouth_silence")}
      row.update({"lip sync": s["lip_sync"], "colour": s["colour_error"], "latent bound.": s["boundary_ratio_latent"],
                  "flicker": s["flicker"]})
    result["modes"][name] = entry
    rows.append(row)
  header = ["mode", "first s", "worst s", "mean s", "RTF", "blocks"]
  if args.eval:
    header += ["lip sync", "colour", "latent bound.", "flicker"]
  print(f"live latency, {args.seconds:g} s of speech at real speed ({args.ckpt}; causal: {result['causal_ckpt']})")
  print_table(rows, header)
  for name, entry in result["modes"].items():
    if len(entry["minutes"]) > 1:
      print(f"{name}, minute by minute")
      print_table(entry["minutes"], ["minute", "frames", "worst_s", "mean_s", "rss_mib"])
  return result


def _rss_mib() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class MinuteStats:
  """Per-minute latency (by the frames' spoken time) and resident memory, from ``run_live``'s ``on_block``."""

  def __init__(self):
    self.stretches: dict[int, dict] = {}

  def on_block(self, block, latencies):
    for t, lat in zip(block.times, latencies):
      m = self.stretches.setdefault(int(t // 60) + 1, {"latencies": [], "rss_mib": 0.0})
      m["latencies"].append(float(lat))
    m["rss_mib"] = _rss_mib() if os.path.exists("/proc/self/statm") else float("nan")

  def rows(self) -> list[dict]:
    return [{"minute": k, "frames": len(v["latencies"]), "worst_s": max(v["latencies"]),
             "mean_s": float(np.mean(v["latencies"])), "rss_mib": v["rss_mib"]}
            for k, v in sorted(self.stretches.items())]
