"""Benchmarks (``scripts/bench.py NAME``): ours vs the PyTorch reference side by side, and runs of the whole model.

  dit     A2V-DiT forward vs diffusers' LTX transformer; Split-CFG step vs one branch    (bench/dit.py)
  vae     VAE decode vs diffusers' AutoencoderKLLTXVideo                                 (bench/vae.py)
  sample  real-time factor of generation, split by stage                                 (bench/sample.py)
  long    minutes of speech through one write_video: memory as the video grows           (bench/long.py)
  gpu     one section of the GPU check (scripts/gpu_check.sh)                            (bench/gpu.py)
  serve   live sessions on one device, batched vs one clip per call: latency, device time (bench/serve.py)
  distill teacher (8 steps × 3 CFG rows) vs one-pass students at 4, 2, 1 steps: seconds per clip (bench/distill.py)
  live    live latency (first, worst, mean) and real-time factor, clip mode vs rolling window (bench/live.py)
  decode  streaming VAE decode vs the rolling window's decode: ms, FLOPs, bytes per latent frame (bench/decode.py)
  cost    full-size cost model: FLOPs and memory per second of video and sessions per device, per live mode (bench/cost.py)

Each module has ``add_args(parser)`` and ``run(args) -> dict``: it prints its table and returns its numbers,
which ``--json PATH`` writes. Timings belong here, not in tests: a timed test is either flaky or loose.
"""

from __future__ import annotations

import argparse
import json

from read_jax.bench import cost, decode, dit, distill, gpu, live, long, sample, serve, vae
from read_jax.files import atomic_path

BENCHMARKS = {"dit": dit, "vae": vae, "sample": sample, "long": long, "gpu": gpu, "serve": serve, "distill": distill,
              "live": live, "decode": decode, "cost": cost}


def add_commands(parser: argparse.ArgumentParser) -> None:
  """One sub-command per benchmark, each with its module's options and ``--json``."""
  sub = parser.add_subparsers(dest="name", required=True, metavar="{" + ",".join(BENCHMARKS) + "}")
  for name, module in BENCHMARKS.items():
    summary = (module.__doc__ or "").strip().splitlines()[0]
    p = sub.add_parser(name, help=summary, description=module.__doc__, formatter_class=parser.formatter_class)
    module.add_args(p)
    p.add_argument("--json", default="", help="also write the numbers here")


def run(args: argparse.Namespace) -> int:
  """Run the benchmark ``args.name``; write its numbers to ``args.json``; exit code 1 if it reports
  ``ok: False`` (a check inside it failed)."""
  result = BENCHMARKS[args.name].run(args)
  if args.json:
    with atomic_path(args.json) as tmp:
      with open(tmp, "w") as fh:
        json.dump(result, fh, indent=1, default=str)
  return 1 if result.get("ok") is False else 0
