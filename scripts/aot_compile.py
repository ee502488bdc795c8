#!/usr/bin/env python
"""Compile stage 2 ahead of time for a TPU slice, on a machine without a TPU (docs/pod_scale.md).

  python scripts/aot_compile.py --config a2v_dit.py --topology v5e:16x16 --mesh data=1,fsdp=256,tensor=1
  python scripts/aot_compile.py --config a2v_dit.py --topology v5p:2x2x4 --per-device-batch 2 \\
      --config.model.remat=full

Compiles the train step ``scripts/train.py`` runs (``Trainer(config, stage, mesh).step``) and the
sampler's per-clip 8-step Split-CFG function (on one chip), allocating nothing; prints per-device
argument/output/temp/code bytes against the chip's HBM, FLOPs per step and the roofline step time and
MFU. Exit status 2 when a program does not fit (the message names the largest buffers).
Needs libtpu: ``pip install "jax[tpu]==0.10.2"``. ``--config.*`` overrides work as in train.py.
"""

import argparse
import json
import os
import sys


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", required=True, help="a2v_dit.py, or configs/a2v_dit.py:tiny")
  parser.add_argument("--topology", required=True, help="TPU slice: v5e:16x16 (v5e-256), v5p:2x2x4 (v5p-32), v5e:2x2")
  parser.add_argument("--mesh", default="", help="data=..,fsdp=..,tensor=.. (omitted axes = 1); default: config.mesh")
  parser.add_argument("--per-device-batch", type=int, default=0,
                      help="examples per data×fsdp shard and micro-batch; sets config.data.batch_size = "
                           "this × accum_steps × data × fsdp (default: keep config.data.batch_size)")
  parser.add_argument("--what", default="train,sample", help="comma list: train, sample")
  parser.add_argument("--json", default="", help="also write the reports as JSON to this file")
  parser.add_argument("--buffers", type=int, default=0,
                      help="also list this many of the largest buffers per device (compiles with an XLA dump)")
  args, overrides = parser.parse_known_args(argv)
  bad = [o for o in overrides if not o.startswith("--config.")]
  if bad:
    parser.error(f"unrecognised arguments {bad}: overrides look like --config.model.remat=full")
  what = [w for w in args.what.split(",") if w]
  if not what or set(what) - {"train", "sample"}:
    parser.error(f"--what {args.what!r}: a comma list of train, sample")

  if "JAX_PLATFORMS" not in os.environ:
    os.environ["JAX_PLATFORMS"] = "cpu"  # the host side; the TPU is only a compilation target here
  from read_jax import aot
  aot.quiet_libtpu_env()
  from read_jax.config import load_config

  config = load_config(args.config, overrides)
  try:
    devices, chip = aot.topology_devices(args.topology)
    config.unlock()
    if args.mesh:
      config.mesh.update(aot.parse_mesh(args.mesh))
    if args.per_device_batch:
      n = 1
      from read_jax.sharding import make_mesh
      mesh = make_mesh(config.mesh, devices)
      n = mesh.shape["data"] * mesh.shape["fsdp"]
      config.data.batch_size = args.per_device_batch * config.train.accum_steps * n
    config.lock()
  except (ValueError, RuntimeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1

  reports, status = [], 0
  for w in what:
    try:
      if w == "train":
        r = aot.compile_train_step(config, args.topology, devices, chip, buffers=args.buffers)
      else:
        r = aot.compile_sample_clip(config, args.topology, devices, chip, buffers=args.buffers)
    except aot.DoesNotFitError as e:
      print(f"error: {e}", file=sys.stderr)
      status = 2
      continue
    print(r.format(), flush=True)
    if not r.fits:
      print(f"error: {w}: {r.total_bytes / aot.GiB:.2f} GiB per device exceeds {chip.name}'s "
            f"{chip.hbm_bytes / aot.GiB:.0f} GiB HBM", file=sys.stderr)
      status = 2
    reports.append(r.as_dict())
  if args.json:
    with open(args.json, "w") as f:
      json.dump(reports, f, indent=2, default=str)
  return status


if __name__ == "__main__":
  sys.exit(main())
