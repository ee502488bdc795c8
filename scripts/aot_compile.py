#!/usr/bin/env python
"""Compile stage 2 ahead of time for a TPU slice, on a machine without a TPU (docs/pod_scale.md).

  python scripts/aot_compile.py --config a2v_dit.py --topology v5e:16x16 --mesh data=1,fsdp=256,tensor=1
  python scripts/aot_compile.py --config a2v_dit.py --topology v5p:2x2x4 --per-device-batch 2 \\
      --config.model.remat=full

Compiles the train step ``scripts/train.py`` runs (``Trainer(config, stage, mesh).step``) and the
sampler's per-clip 8-step Split-CFG function (on one chip), allocating nothing; prints per-device
argument/output/temp/code bytes against the chip's HBM, FLOPs per step and the roofline step time and
MFU. Exit status 2 when a program does not fit (the message names the largest buffers), and for bad
input (an unknown config, key, topology or mesh, no libtpu, an unwritable --json): one error line.
Needs libtpu: ``pip install "jax[tpu]==0.10.2"``. ``--config.*`` overrides work as in train.py.
"""

import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # before jax is imported: the TPU is only a compilation target

from read_jax import aot, cli, media  # noqa: E402
from read_jax.config import load_config  # noqa: E402
from read_jax.errors import InputError  # noqa: E402
from read_jax.files import atomic_path  # noqa: E402


def main(argv=None) -> int:
  parser = cli.parser(__doc__)
  parser.add_argument("--config", required=True, help="a2v_dit.py, or configs/a2v_dit.py:tiny")
  parser.add_argument("--topology", required=True, help="TPU slice: v5e:16x16 (v5e-256), v5p:2x2x4 (v5p-32), v5e:2x2")
  parser.add_argument("--mesh", default="", help="data=..,fsdp=..,tensor=.. (omitted axes = 1); default: config.mesh")
  parser.add_argument("--per-device-batch", type=int, default=0,
                      help="examples per data×fsdp shard and micro-batch; sets config.data.batch_size = "
                           "this × accum_steps × data × fsdp (0: keep config.data.batch_size)")
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
    raise InputError(f"--what {args.what!r}: a comma list of train, sample")
  for option, value in (("--per-device-batch", args.per_device_batch), ("--buffers", args.buffers)):
    if value < 0:
      raise InputError(f"{option} {value}: must be >= 0")
  if args.json:
    media.check_output_path(args.json)  # before minutes of compiling

  aot.quiet_libtpu_env()
  config = load_config(args.config, overrides)
  devices, chip = aot.configure(config, args.topology, args.mesh, args.per_device_batch)

  reports, status = [], 0
  for w in what:
    compile_fn = aot.compile_train_step if w == "train" else aot.compile_sample_clip
    try:
      r = compile_fn(config, args.topology, devices, chip, buffers=args.buffers)
    except aot.DoesNotFitError as e:
      status = cli.fail(str(e))
      continue
    print(r.format(), flush=True)
    if not r.fits:
      status = cli.fail(f"{w}: {r.total_bytes / aot.GiB:.2f} GiB per device exceeds {chip.name}'s "
                        f"{chip.hbm_bytes / aot.GiB:.0f} GiB HBM")
    reports.append(r.as_dict())
  if args.json:
    with atomic_path(args.json) as tmp, open(tmp, "w") as f:
      json.dump(reports, f, indent=2, default=str)
  return status


if __name__ == "__main__":
  cli.exit(cli.run(main))
