#!/usr/bin/env python
"""Train one stage: ``python scripts/train.py --config speechae.py --workdir DIR [--config.a.b=value ...]``.

``--config`` takes a bare name (looked up in configs/) or ``configs/x.py:arg``; every ``--config.*``
flag overrides one key. Rerunning with the same workdir resumes from its latest checkpoint. On a
cluster or pod (the usual coordinator environment variables are set) ``jax.distributed`` is
initialised first, and the same command runs on every process. Bad input (an unknown key, a value
of the wrong type, no data, a missing init checkpoint) is one ``error:`` line and exit code 2.
"""

import os
import sys

import jax

from read_jax import cli
from read_jax.config import load_config
from read_jax.train import train


def _is_multihost() -> bool:
  """Environment variables that mean "several processes": SLURM, Open MPI, TPU pods, explicit JAX."""
  if os.environ.get("SLURM_NTASKS", "1") not in ("", "1"):
    return True
  if os.environ.get("OMPI_COMM_WORLD_SIZE", "1") not in ("", "1"):
    return True
  if len([h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]) > 1:
    return True  # a multi-host TPU slice (a single-host VM lists one worker)
  return any(os.environ.get(k) for k in ("JAX_COORDINATOR_ADDRESS", "MEGASCALE_COORDINATOR_ADDRESS"))


def main(argv=None) -> int:
  parser = cli.parser(__doc__)
  parser.add_argument("--config", required=True, help="speechae.py, or configs/speechae.py:tiny")
  parser.add_argument("--workdir", required=True, help="checkpoints, TensorBoard events, metrics.jsonl")
  args, overrides = parser.parse_known_args(argv)
  bad = [o for o in overrides if not o.startswith("--config.")]
  if bad:
    parser.error(f"unrecognised arguments {bad}: overrides look like --config.train.lr=1e-5")
  config = load_config(args.config, overrides)  # before jax.distributed: a bad flag fails on every host at once
  if _is_multihost():
    jax.distributed.initialize()
  train(config, args.workdir)
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
