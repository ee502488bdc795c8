#!/usr/bin/env python
"""Score generated talking-head videos the way the paper reports them: FID, FVD, Sync-C, Sync-D (Table 1) and the
same per time window (Table 3's drift curve).

  python scripts/evaluate.py --generated gen/ --reference ref/ --weights METRIC_WEIGHTS_DIR --out report.json
  python scripts/evaluate.py --generated gen/ --weights DIR --metrics sync --out sync.json   # no reference needed

Videos are paired by file name and carry their speech track. ``--weights`` holds the metric networks'
safetensors (``python scripts/convert.py import-metric-weights`` writes them from the published files); a
metric whose file is missing is skipped with one line saying which file and how to make it. Writes
``report.json`` (every number, the input counts, the protocol's settings, the weights' hashes), ``report.md``
(the paper's columns) and ``report.png`` (the metrics per ``--window`` seconds). Features are cached per
video in ``--cache`` (default: beside the report), so a second run computes only what changed.
"""

import os

from read_jax import cli
from read_jax.errors import InputError
from read_jax.eval import suite


def main(argv=None) -> int:
  p = cli.parser(__doc__)
  p.add_argument("--generated", required=True, help="folder of generated videos")
  p.add_argument("--reference", default=None, help="folder of reference videos with the same file names")
  p.add_argument("--weights", default=None, help="folder of the metric networks' safetensors")
  p.add_argument("--metrics", default=",".join(suite.METRICS), help="comma-separated subset of fid,fvd,sync")
  p.add_argument("--window", type=float, default=5.0, help="seconds per window of the drift curve")
  p.add_argument("--fid-every", type=int, default=1, help="FID on every k-th frame")
  p.add_argument("--cache", default=None, help="feature cache folder (default: <out>.cache; 'off': none)")
  p.add_argument("--out", default="report.json", help="the report (report.md and report.png beside it)")
  args = p.parse_args(argv)
  if args.fid_every < 1:
    raise InputError(f"--fid-every: need a positive integer, got {args.fid_every}")
  if args.window <= 0:
    raise InputError(f"--window: need seconds > 0, got {args.window}")
  out = os.path.abspath(args.out)
  if not os.path.isdir(os.path.dirname(out)):
    raise InputError(f"--out {args.out}: the folder {os.path.dirname(out)} does not exist")
  for flag, folder in (("--generated", args.generated), ("--reference", args.reference), ("--weights", args.weights)):
    if folder is not None and not os.path.isdir(folder):
      raise InputError(f"{flag} {folder}: no such folder")
  cache = None if args.cache == "off" else (args.cache or os.path.splitext(out)[0] + ".cache")
  metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
  report = suite.evaluate(args.generated, args.reference, weights=args.weights, metrics=metrics,
                          window_s=args.window, fid_every=args.fid_every, cache=cache,
                          progress=lambda it, **kw: cli.progress(it, unit="video", **kw))
  paths = suite.write_report(report, out)
  print(suite.markdown(report))
  print(f"wrote {', '.join(paths)}")
  return 0


if __name__ == "__main__":
  cli.exit(cli.run(main))
