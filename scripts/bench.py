#!/usr/bin/env python
"""Benchmarks, ours vs the PyTorch reference side by side in one run.

  python scripts/bench.py vae      # VAE decode: read_jax (jitted) vs diffusers, same config and input
  python scripts/bench.py dit      # A2V-DiT forward vs diffusers' LTX transformer; Split-CFG step vs one branch
  python scripts/bench.py sample   # real-time factor of generation, split by stage

Each benchmark lives in scripts/benchmarks/<name>.py with ``add_args(parser)`` and ``run(args)``.
"""

import argparse
import importlib
import os
import pkgutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
  import benchmarks
  names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_"))
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="name", required=True)
  for name in names:
    module = importlib.import_module(f"benchmarks.{name}")
    p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else None)
    module.add_args(p)
    p.set_defaults(_run=module.run)
  args = parser.parse_args(argv)
  args._run(args)


if __name__ == "__main__":
  main()
