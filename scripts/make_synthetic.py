#!/usr/bin/env python
"""Write a synthetic talking-face set: NAME.mp4 (video with the speech inside), NAME.wav and
NAME.json (ground-truth mouth track, blink, head motion, identity) per clip.

  python scripts/make_synthetic.py --out data/synth --num 100 --seconds 5 --size 128 --seed 0
  python scripts/make_synthetic.py --out data/synth_test --split test --num 20
  python scripts/make_synthetic.py --out data/espeak --speech espeak     # real speech (espeak-ng), 8 training languages
  python scripts/make_synthetic.py --out data/unseen --split test --speech espeak --voices unseen

Clip i has seed ``SPLIT_OFFSET[split] + seed + i`` (train 0, val 1,000,000, test 2,000,000), so
splits never share a clip or a speaker; files are named ``synth_<seed>``. Existing clips are kept,
so a rerun resumes; every file is written atomically, so an interrupt (Ctrl-C: the clips in progress
are finished, the rest cancelled) leaves no partial clip. A bad option or an unusable --out is one
error line and exit code 2. Logic: read_jax/data/synthetic.py (``write_set``).
"""

import sys

from read_jax import cli
from read_jax.data import espeak, synthetic


def main(argv=None) -> int:
  p = cli.parser(__doc__)
  p.add_argument("--out", required=True, help="output directory (created if missing)")
  p.add_argument("--num", type=int, default=100, help="number of clips")
  p.add_argument("--seconds", type=float, default=5.0, help="clip length in seconds (rounded to 25 fps frames)")
  p.add_argument("--size", type=int, default=128, help="frame size in pixels (even)")
  p.add_argument("--seed", type=int, default=0, help="first clip index within the split")
  p.add_argument("--split", default="train", choices=sorted(synthetic.SPLIT_OFFSETS), help="seed range")
  p.add_argument("--workers", type=int, default=1, help="worker processes")
  p.add_argument("--overwrite", action="store_true", help="rewrite clips that already exist")
  p.add_argument("--speech", default="formant", choices=synthetic.SPEECH_KINDS,
                 help="formant: the drawn speech; espeak: espeak-ng voices (apt-get install espeak-ng); mixed: half each")
  p.add_argument("--voices", default=None, choices=sorted(espeak.POOLS),
                 help="espeak voice pool (default: unseen for --split test, else train)")
  args = p.parse_args(argv)

  seeds = synthetic.write_set(args.out, num=args.num, seconds=args.seconds, size=args.size, seed=args.seed,
                              split=args.split, workers=args.workers, overwrite=args.overwrite,
                              speech=args.speech, voices=args.voices)
  print(f"{len(seeds)} clips ({args.split} seeds {seeds.start}..{seeds.stop - 1}) in {args.out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
