#!/usr/bin/env python
"""Write a synthetic talking-face set: NAME.mp4 (video with the speech inside), NAME.wav and
NAME.json (ground-truth mouth track, blink, head motion, identity) per clip.

  python scripts/make_synthetic.py --out data/synth --num 100 --seconds 5 --size 128 --seed 0
  python scripts/make_synthetic.py --out data/synth_test --split test --num 20

Clip i has seed ``SPLIT_OFFSET[split] + seed + i`` (train 0, val 1,000,000, test 2,000,000), so
splits never share a clip or a speaker; files are named ``synth_<seed>``. Existing clips are kept,
so a rerun resumes.
"""

import argparse
import concurrent.futures
import os
import sys

from tqdm import tqdm

from read_jax.data import synthetic


def _make_one(seed, out, seconds, size, overwrite):
  name = f"synth_{seed:07d}"
  if not overwrite and all(os.path.exists(os.path.join(out, name + ext)) for ext in (".mp4", ".wav", ".json")):
    return name
  clip = synthetic.make_clip(seed, seconds, size)
  synthetic.write_clip(clip, out, name)
  return name


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="output directory (created if missing)")
  parser.add_argument("--num", type=int, default=100, help="number of clips")
  parser.add_argument("--seconds", type=float, default=5.0, help="clip length in seconds (rounded to 25 fps frames)")
  parser.add_argument("--size", type=int, default=128, help="frame size in pixels (even)")
  parser.add_argument("--seed", type=int, default=0, help="first clip index within the split")
  parser.add_argument("--split", default="train", choices=sorted(synthetic.SPLIT_OFFSETS), help="seed range")
  parser.add_argument("--workers", type=int, default=1, help="worker processes")
  parser.add_argument("--overwrite", action="store_true", help="rewrite clips that already exist")
  args = parser.parse_args(argv)
  if args.num < 1:
    parser.error(f"--num must be >= 1, got {args.num}")
  if args.seconds * synthetic.FPS < 1:
    parser.error(f"--seconds must give at least one frame (>= {1 / synthetic.FPS}), got {args.seconds}")
  if args.size < 8 or args.size % 2:
    parser.error(f"--size must be an even number >= 8 (yuv420p video), got {args.size}")
  if args.workers < 1:
    parser.error(f"--workers must be >= 1, got {args.workers}")
  try:
    seeds = synthetic.split_seeds(args.split, args.num, args.seed)
  except ValueError as e:
    parser.error(str(e))
  os.makedirs(args.out, exist_ok=True)
  job = dict(out=args.out, seconds=args.seconds, size=args.size, overwrite=args.overwrite)
  bar = tqdm(total=len(seeds), desc=f"synthetic {args.split}", unit="clip")
  if args.workers == 1:
    for seed in seeds:
      bar.set_postfix_str(_make_one(seed, **job))
      bar.update()
  else:
    with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
      for name in pool.map(_make_one, seeds, *([v] * len(seeds) for v in job.values())):
        bar.set_postfix_str(name)
        bar.update()
  bar.close()
  print(f"{len(seeds)} clips ({args.split} seeds {seeds.start}..{seeds.stop - 1}) in {args.out}", file=sys.stderr)


if __name__ == "__main__":
  main()
