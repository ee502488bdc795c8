#!/usr/bin/env python
"""Generate a talking-head video from one portrait and a speech recording.

  python scripts/sample.py                                   # the bundled demo model and inputs → out.mp4
  python scripts/sample.py --ref face.png --audio speech.wav --out out.mp4 --ckpt DIR [--steps 8]
         [--cfg split|joint|none] [--alpha 2] [--beta 6] [--seed 0] [--dtype bfloat16]

Prints a progress bar over clips and a final line with video seconds, wall seconds and the
real-time factor. Bad inputs give one error line and exit code 2; an existing --out is replaced
only once the new video is complete.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "assets", "demo")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--ref", default=os.path.join(DEMO, "reference.png"), help="reference portrait (any size/mode)")
  p.add_argument("--audio", default=os.path.join(DEMO, "speech.wav"), help="speech audio (any format librosa reads)")
  p.add_argument("--out", default="out.mp4", help="output mp4 (written atomically)")
  p.add_argument("--ckpt", default=DEMO, help="read_jax checkpoint directory (default: the bundled demo model)")
  p.add_argument("--steps", type=int, default=None, help="denoiser passes per clip (default: the checkpoint's, 8)")
  p.add_argument("--cfg", choices=("split", "joint", "none"), default=None, help="classifier-free guidance mode")
  p.add_argument("--alpha", type=float, default=None, help="reference (split) / joint guidance scale (paper: 2)")
  p.add_argument("--beta", type=float, default=None, help="speech guidance scale for split CFG (paper: 6)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="compute dtype of every model (bfloat16 on accelerators)")
  args = p.parse_args(argv)

  for what, path in (("--ref", args.ref), ("--audio", args.audio)):
    if not os.path.isfile(path):
      return _fail(f"{what} {path}: no such file")
  if not os.path.isdir(args.ckpt):
    return _fail(f"--ckpt {args.ckpt}: no such checkpoint directory")
  out_dir = os.path.dirname(os.path.abspath(args.out))
  if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
    return _fail(f"--out {args.out}: directory {out_dir} does not exist or is not writable")

  import tqdm
  from read_jax.pipeline import ReadPipeline
  try:
    import jax.numpy as jnp
    pipe = ReadPipeline.from_pretrained(args.ckpt, dtype=getattr(jnp, args.dtype))
    bar = tqdm.tqdm(total=None, unit="clip", desc="generating", dynamic_ncols=True)

    def progress(done, total):
      bar.total = total
      bar.update(done - bar.n)

    start = time.perf_counter()
    timings = pipe.write_video(args.ref, args.audio, args.out, steps=args.steps, cfg=args.cfg, alpha=args.alpha,
                               beta=args.beta, seed=args.seed, progress=progress)
    bar.close()
  except (ValueError, OSError) as e:  # AudioError, MediaError, CheckpointError are ValueErrors
    return _fail(str(e).splitlines()[0] if str(e) else repr(e))
  wall = time.perf_counter() - start
  video = timings.video_seconds
  print(f"wrote {args.out}: {video:.2f} s of video in {wall:.2f} s wall "
        f"(real-time factor {wall / max(video, 1e-9):.2f}; < 1 is faster than real time)")
  return 0


def _fail(message: str) -> int:
  print(f"error: {message}", file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main())
