#!/usr/bin/env python
"""Score generated talking-head videos the way the paper reports them: FID, FVD, Sync-C, Sync-D (Table 1) and the
same per time window (Table 3's drift curve); with --ckpt, generate them first, once per step count (Fig. 3).

  python scripts/evaluate.py --generated gen/ --reference ref/ --weights METRIC_WEIGHTS_DIR --out report.json
  python scripts/evaluate.py --generated gen/ --weights DIR --metrics sync --out sync.json   # no reference needed
  python scripts/evaluate.py --ckpt assets/demo --reference test/ --steps 1,2,4,8,16 --metrics faces --out fig3.json
  python scripts/evaluate.py --ckpt DIR --reference test/ --weights DIR --max-seconds 10 --out report.json

Videos are paired by file name and carry their speech track. ``--weights`` holds the metric networks'
safetensors (``python scripts/convert.py import-metric-weights`` writes them from the published files); a
metric whose file is missing is skipped with one line saying which file and how to make it. Writes
``report.json`` (every number, the input counts, the protocol's settings, the weights' hashes), ``report.md``
(the paper's columns) and ``report.png`` (the metrics per ``--window`` seconds). Features are cached per
video in ``--cache`` (default: beside the report), so a second run computes only what changed.

With ``--ckpt`` (a read_jax checkpoint directory) the test set ``--reference`` is generated the paper's way:
each video's first frame is the portrait and its own speech track (the first ``--max-seconds``) the audio. For
each ``--steps`` count s the videos go to ``<generated>/steps<s>/`` (``--generated``, default
``<out>.generated/``; a rerun regenerates only what changed: ``generation.json`` there) and are scored against
the references cut to the same length; the report, with the wall and denoiser seconds per clip under
``"generation"``, is ``--out`` for one count and ``<out>.steps<s>.json`` for several. With several, ``--out``
is the combined report: ``fig3.json`` (every run's metrics and times), ``fig3.md`` (one row per step count)
and ``fig3.png`` (every metric against the steps, wall seconds per clip on a second axis). A distilled
checkpoint refuses the step counts it was not distilled for before anything loads.

``--protocol`` sets the paper's settings (with ``--ckpt``; a flag given explicitly wins):

  table1  the test videos cut to 121 frames (4.84 s, the paper's §4.1 clip length), the checkpoint's steps
  table3  one long video per test identity, the first 10 min, metrics per 5 s window (the drift curve)
  fig3    the table1 clips at 1, 2, 4, 8 and 16 steps, with the wall seconds per clip

  python scripts/evaluate.py --ckpt CKPT --reference test/ --weights DIR --protocol table1 --out table1.json
"""

import os
import sys

from read_jax import cli
from read_jax.convert import checkpoint_dir
from read_jax.errors import CheckpointError, InputError
from read_jax.eval import generate, suite
from read_jax.pipeline import ReadPipeline, check_checkpoint_sampling


# --protocol presets (paper §4.1: "identical test data with the same length of 4.84 s (121 frames)"; Table 3 and
# Fig. 3; the drift curve runs to 10 min): values for the flags left unset.
PROTOCOLS = {
    "table1": {"max_seconds": 121 / 25},
    "table3": {"max_seconds": 600.0, "window": 5.0},
    "fig3": {"max_seconds": 121 / 25, "steps": "1,2,4,8,16"},
}


def main(argv=None) -> int:
  p = cli.parser(__doc__)
  p.add_argument("--generated", default=None,
                 help="folder of generated videos (with --ckpt: where they are written; default <out>.generated)")
  p.add_argument("--reference", default=None, help="folder of reference videos with the same file names")
  p.add_argument("--weights", default=None, help="folder of the metric networks' safetensors")
  p.add_argument("--metrics", default=",".join(suite.METRICS), help="comma-separated subset of fid,fvd,sync")
  p.add_argument("--window", type=float, default=5.0, help="seconds per window of the drift curve")
  p.add_argument("--fid-every", type=int, default=1, help="FID on every k-th frame")
  p.add_argument("--cache", default=None, help="feature cache folder (default: <out>.cache; 'off': none)")
  p.add_argument("--out", default="report.json", help="the report (report.md and report.png beside it)")
  p.add_argument("--ckpt", default=None, help="a read_jax checkpoint directory: generate the videos from --reference")
  p.add_argument("--steps", default=None,
                 help="with --ckpt: comma-separated step counts, one run each, e.g. 1,2,4,8,16 (default: the "
                      "checkpoint's)")
  p.add_argument("--seed", type=int, default=0, help="with --ckpt: the sampling seed of every video")
  p.add_argument("--max-seconds", type=float, default=None,
                 help="with --ckpt: only the first seconds of each reference's speech (default: all of it)")
  p.add_argument("--protocol", choices=tuple(PROTOCOLS), default=None,
                 help="with --ckpt: the paper's settings for Table 1, Table 3 or Fig. 3 (see above)")
  args = p.parse_args(argv)
  apply_protocol(args, sys.argv[1:] if argv is None else argv)
  if args.fid_every < 1:
    raise InputError(f"--fid-every: need a positive integer, got {args.fid_every}")
  if args.window <= 0:
    raise InputError(f"--window: need seconds > 0, got {args.window}")
  out = os.path.abspath(args.out)
  if not os.path.isdir(os.path.dirname(out)):
    raise InputError(f"--out {args.out}: the folder {os.path.dirname(out)} does not exist")
  if args.ckpt is None:
    if args.generated is None:
      raise InputError("--generated: give the folder of generated videos (or --ckpt to generate them)")
    for flag, value in (("--steps", args.steps), ("--max-seconds", args.max_seconds)):
      if value is not None:
        raise InputError(f"{flag}: only with --ckpt (the generated videos are given)")
  generated_in = None if args.ckpt else args.generated  # with --ckpt it is an output folder
  for flag, folder in (("--generated", generated_in), ("--reference", args.reference), ("--weights", args.weights)):
    if folder is not None and not os.path.isdir(folder):
      raise InputError(f"{flag} {folder}: no such folder")
  cache = None if args.cache == "off" else (args.cache or os.path.splitext(out)[0] + ".cache")
  metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
  progress = lambda it, **kw: cli.progress(it, unit="video", **kw)  # noqa: E731
  score = dict(weights=args.weights, metrics=metrics, window_s=args.window, fid_every=args.fid_every, cache=cache,
               progress=progress)
  if args.ckpt is not None:
    return _from_checkpoint(args, out, score)
  report = suite.evaluate(args.generated, args.reference, **score)
  paths = suite.write_report(report, out)
  print(suite.markdown(report))
  print(f"wrote {', '.join(paths)}")
  return 0


def apply_protocol(args, argv) -> None:
  """Fill the flags ``--protocol`` sets (:data:`PROTOCOLS`) that ``argv`` does not give explicitly."""
  if args.protocol is None:
    return
  if args.ckpt is None:
    raise InputError(f"--protocol {args.protocol}: only with --ckpt (it sets how the videos are generated)")
  given = {str(a).lstrip("-").split("=")[0].replace("-", "_") for a in argv if str(a).startswith("--")}
  for key, value in PROTOCOLS[args.protocol].items():
    if key not in given:
      setattr(args, key, value)


def _from_checkpoint(args, out: str, score: dict) -> int:
  """--ckpt: generate the test set per step count, score each run, and for several counts the Fig. 3 report."""
  if args.reference is None:
    raise InputError("--ckpt: give --reference, the test set whose videos are generated again and scored")
  if not os.path.isdir(args.ckpt):
    raise CheckpointError(f"--ckpt {args.ckpt}: no such checkpoint directory")
  checkpoint_dir.check_complete(args.ckpt)
  if args.max_seconds is not None and not args.max_seconds > 0:
    raise InputError(f"--max-seconds: need seconds > 0, got {args.max_seconds}")
  steps = cli.step_counts(args.steps) if args.steps is not None else [generate.checkpoint_settings(args.ckpt).steps]
  for s in steps:  # e.g. a count a distilled student refuses: before any weight loads
    check_checkpoint_sampling(args.ckpt, s)
  suite.check_metrics(score["metrics"])
  stem = os.path.splitext(out)[0]
  generated = os.path.abspath(args.generated or stem + ".generated")
  ckpt, ckpt_id = os.path.abspath(args.ckpt), generate.ckpt_identity(args.ckpt)

  cli.compilation_cache()
  pipe = ReadPipeline.from_pretrained(args.ckpt)
  runs = {}
  for s in steps:
    folder = os.path.join(generated, f"steps{s}")
    summary = generate.generate_set(pipe, args.reference, folder, steps=s, seed=args.seed,
                                    max_seconds=args.max_seconds, progress=score["progress"], ckpt_id=ckpt_id)
    summary = {**summary, "steps": s, "ckpt": ckpt, "ckpt_id": ckpt_id}
    report = suite.evaluate(folder, args.reference, **score, cut_to_shorter=True)
    report["generation"] = summary
    path = out if len(steps) == 1 else f"{stem}.steps{s}.json"
    paths = suite.write_report(report, path)
    print(suite.markdown(report))
    print(f"steps {s}: {summary['wall_s_per_clip']:.3f} s wall per clip ({summary['denoise_s_per_clip']:.3f} s "
          f"denoiser), real-time factor {summary['real_time_factor']:.2f}; wrote {', '.join(paths)}")
    runs[str(s)] = {"metrics": report["metrics"], "generation": summary, "report": path}
  if len(steps) > 1:
    combined = {"ckpt": ckpt, "ckpt_id": ckpt_id, "steps": steps, "runs": runs}
    paths = suite.write_steps_report(combined, out)
    print(suite.steps_markdown(combined))
    print(f"wrote {', '.join(paths)}")
  return 0


if __name__ == "__main__":
  cli.exit(cli.run(main))
