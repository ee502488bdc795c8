#!/usr/bin/env python
"""Generate a talking-head video from one portrait and a speech recording.

  python scripts/sample.py                                   # the bundled demo model and inputs → out.mp4
  python scripts/sample.py --ref face.png --audio speech.wav --out out.mp4 --ckpt DIR [--steps 8]
         [--cfg split|joint|none] [--alpha 2] [--beta 6] [--seed 0] [--dtype bfloat16]

Prints a progress bar over clips and a final line with video seconds, wall seconds and the
real-time factor. Every input is checked before the model loads; a bad one gives one error line
and exit code 2. An existing --out is replaced only once the new video is complete (Ctrl-C or
SIGTERM leave it as it was: exit code 130 / 143).
"""

import os
import time

import jax.numpy as jnp

from read_jax import audio, cli, media
from read_jax.convert import checkpoint_dir
from read_jax.errors import CheckpointError
from read_jax.pipeline import ReadPipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "assets", "demo")


def main(argv=None) -> int:
  p = cli.parser(__doc__)
  p.add_argument("--ref", default=os.path.join(DEMO, "reference.png"), help="reference portrait (any size/mode)")
  p.add_argument("--audio", default=os.path.join(DEMO, "speech.wav"),
                 help="speech audio (wav, flac, mp3, m4a, ... or a video's sound track)")
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

  # The cheap checks (headers, a temp file in the output folder) before the model loads.
  if not os.path.isdir(args.ckpt):
    raise CheckpointError(f"--ckpt {args.ckpt}: no such checkpoint directory")
  checkpoint_dir.check_complete(args.ckpt)
  media.check_image(args.ref)
  audio.check_audio_file(args.audio)
  media.check_output_path(args.out)

  pipe = ReadPipeline.from_pretrained(args.ckpt, dtype=getattr(jnp, args.dtype))
  start = time.perf_counter()
  with cli.progress(total=None, unit="clip", desc="generating") as bar:
    def progress(done, total):
      bar.total = total
      bar.update(done - bar.n)

    timings = pipe.write_video(args.ref, args.audio, args.out, steps=args.steps, cfg=args.cfg, alpha=args.alpha,
                               beta=args.beta, seed=args.seed, progress=progress)
  wall = time.perf_counter() - start
  video = timings.video_seconds
  print(f"wrote {args.out}: {video:.2f} s of video in {wall:.2f} s wall "
        f"(real-time factor {wall / max(video, 1e-9):.2f}; < 1 is faster than real time)")
  return 0


if __name__ == "__main__":
  cli.exit(cli.run(main))
