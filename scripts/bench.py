#!/usr/bin/env python
"""Benchmarks, ours vs the PyTorch reference side by side in one run, and runs of the whole model.

  python scripts/bench.py vae      # VAE decode: read_jax (jitted) vs diffusers, same config and input
  python scripts/bench.py dit      # A2V-DiT forward vs diffusers' LTX transformer; Split-CFG step vs one branch
  python scripts/bench.py sample   # real-time factor of generation, split by stage
  python scripts/bench.py long     # 1, 5, 10 min of video in one run: memory stays flat, frame count exact
  python scripts/bench.py serve    # live sessions on one device: batched vs one clip per call (latency, device time)
  python scripts/bench.py distill  # teacher (8 steps × 3 CFG rows) vs distilled students (4, 2, 1 steps × 1 row) per clip
  python scripts/bench.py live     # live latency and real-time factor: clip mode vs the rolling window
  python scripts/bench.py gpu --section dit --out DIR                  # one section of scripts/gpu_check.sh
  python scripts/bench.py NAME --help; python scripts/bench.py NAME ... --json out.json

Each benchmark lives in read_jax/bench/<name>.py.
"""

import sys

from read_jax import bench, cli


def main(argv=None) -> int:
  parser = cli.parser(__doc__)
  bench.add_commands(parser)
  return bench.run(parser.parse_args(argv))


if __name__ == "__main__":
  sys.exit(cli.run(main))
