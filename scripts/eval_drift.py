#!/usr/bin/env python
"""The long-video drift curve (the paper's Table 3) and the quality-against-steps curve (Fig. 3) of a demo model,
on the demo's own measures (lip sync r against the synthetic clip's true mouth track, face colour error, mouth in
silence, boundary ratio, flicker), not FID/FVD/Sync (scripts/evaluate.py scores those on real data).

  python scripts/eval_drift.py                                   # assets/demo: 3 test identities x 10 min
  python scripts/eval_drift.py --num 1 --seconds 60 --out drift.json
  python scripts/eval_drift.py --steps-curve                     # 8 test clips x 8 s at 1,2,4,8,16 steps
  python scripts/eval_drift.py --steps-curve --steps 2,8 --num 4 --out steps.json

Drift: each identity's long clip (formant speech with pauses) is generated in one go with the checkpoint's
settings (clip mode: ANS clips) and scored per --window seconds; writes --out (default drift.json: every
window's numbers, the settings, the wall seconds), drift.md (the curve at 5 s, 1, 2, 5 and 10 min, mean over the
identities) and drift.png (each measure against the minutes, one line per identity and the mean).

--steps-curve: read_jax/eval/demo.py's light evaluation of the same test clips at each step count, with the
warm wall and denoiser seconds per ANS clip; writes --out (default steps.json), steps.md and steps.png in the
format of scripts/evaluate.py's Fig. 3 report.
"""

import os

from read_jax import cli
from read_jax.convert import checkpoint_dir
from read_jax.errors import CheckpointError, InputError
from read_jax.eval import drift
from read_jax.pipeline import ReadPipeline, check_checkpoint_sampling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
  p = cli.parser(__doc__)
  p.add_argument("--ckpt", default=os.path.join(ROOT, "assets", "demo"), help="read_jax checkpoint directory")
  p.add_argument("--steps-curve", action="store_true", help="the steps curve (Fig. 3) instead of the drift curve")
  p.add_argument("--num", type=int, default=None, help="test identities (default: 3; --steps-curve: 8 clips)")
  p.add_argument("--seconds", type=float, default=None,
                 help="seconds of each identity's video (default: 600; --steps-curve: 8 per clip)")
  p.add_argument("--first", type=int, default=100, help="first test-split clip index")
  p.add_argument("--seed", type=int, default=0, help="sampling seed")
  p.add_argument("--window", type=float, default=drift.WINDOW_S, help="drift: seconds per window")
  p.add_argument("--steps", default=None,
                 help="drift: the sampling steps (default: the checkpoint's); --steps-curve: comma-separated "
                      "counts (default: 1,2,4,8,16)")
  p.add_argument("--out", default=None, help="the JSON report, .md and .png beside it (default: drift.json / "
                                             "steps.json)")
  args = p.parse_args(argv)
  curve = args.steps_curve
  num = args.num if args.num is not None else (8 if curve else 3)
  seconds = args.seconds if args.seconds is not None else (8.0 if curve else 600.0)
  if num < (2 if curve else 1):
    raise InputError(f"--num: need at least {2 if curve else 1} (the steps curve's control pairs each clip with "
                     f"another), got {num}")
  if not seconds > 0 or seconds * 25 < 3:
    raise InputError(f"--seconds: need at least 3 frames (0.12 s), got {seconds}")
  if not curve and (not args.window * 25 >= 3 or args.window > seconds):
    raise InputError(f"--window: need 0.12 s ≤ window ≤ --seconds ({seconds:g}), got {args.window}")
  out = os.path.abspath(args.out or ("steps.json" if curve else "drift.json"))
  if not out.endswith(".json"):
    raise InputError(f"--out {args.out}: the report is a .json file")
  if not os.path.isdir(os.path.dirname(out)):
    raise InputError(f"--out {args.out}: the folder {os.path.dirname(out)} does not exist")
  if not os.path.isdir(args.ckpt):
    raise CheckpointError(f"--ckpt {args.ckpt}: no such checkpoint directory")
  checkpoint_dir.check_complete(args.ckpt)
  if curve:
    steps = cli.step_counts(args.steps or ",".join(map(str, drift.STEPS)))
  else:
    steps = cli.step_counts(args.steps) if args.steps else [None]
    if len(steps) > 1:
      raise InputError(f"--steps {args.steps}: the drift curve samples at one step count (the steps curve: "
                       "--steps-curve)")
  for s in steps:  # e.g. a count a distilled student refuses: before any weight loads
    check_checkpoint_sampling(args.ckpt, s)

  cli.compilation_cache()
  pipe = ReadPipeline.from_pretrained(args.ckpt)
  if curve:
    report = drift.steps_curve(pipe, steps=steps, num=num, seconds=seconds, first=args.first, seed=args.seed,
                               ckpt=os.path.abspath(args.ckpt))
    paths = drift.write_steps_report(report, out)
    for s in steps:
      g, m = report["runs"][str(s)]["generation"], report["runs"][str(s)]["metrics"]
      print(f"steps {s:2d}: {g['wall_s_per_clip']:.3f} s wall per ANS clip ({g['wall_s_per_video']:.2f} s per "
            f"{seconds:g} s video)  " + "  ".join(f"{k} {v:.3f}" for k, v in m.items()))
  else:
    sample = {} if steps[0] is None else {"steps": steps[0]}
    report = drift.drift(pipe, num=num, seconds=seconds, first=args.first, seed=args.seed, window_s=args.window,
                         **sample)
    paths = drift.write_drift_report(report, out)
    print(drift.drift_markdown(report))
  print(f"wrote {', '.join(paths)}")
  return 0


if __name__ == "__main__":
  cli.exit(cli.run(main))
