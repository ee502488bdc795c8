#!/usr/bin/env python
"""Score a demo model on held-out synthetic speech: lip sync, identity colours, ANS clip boundaries.

  python scripts/eval_demo.py                         # the bundled model (assets/demo), 8 test clips of 8 s
                                                      # per held-out set (formant speech; espeak-ng voices)
  python scripts/eval_demo.py --sets espeak_unseen    # one set
  python scripts/eval_demo.py --ckpt DIR --num 4 --json scores.json
  python scripts/eval_demo.py --vae DIR               # a VAE alone (e.g. ckpt/vae, train_demo_vae.py --out)

The scores are explained below (read_jax/eval/demo.py's docstring).
"""

import os
import sys

from read_jax import cli
from read_jax.eval import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
  parser = cli.parser(__doc__ + "\n" + demo.__doc__)
  parser.add_argument("--ckpt", default=os.path.join(ROOT, "assets", "demo"), help="read_jax checkpoint directory")
  parser.add_argument("--num", type=int, default=8, help="test clips")
  parser.add_argument("--seconds", type=float, default=8.0, help="length of each test clip")
  parser.add_argument("--first", type=int, default=100, help="first test-split clip index")
  parser.add_argument("--seed", type=int, default=0, help="sampling seed")
  parser.add_argument("--json", default="", help="also write the scores here")
  parser.add_argument("--vae", default="", help="score this VAE's reconstructions instead (diffusers layout)")
  parser.add_argument("--cfg", choices=("none", "joint", "split", "distilled"), default=None,
                      help="guidance (None: the checkpoint's)")
  parser.add_argument("--alpha", type=float, default=None, help="guidance α (None: the checkpoint's)")
  parser.add_argument("--beta", type=float, default=None, help="guidance β (split only; None: the checkpoint's)")
  parser.add_argument("--steps", type=int, default=None, help="sampling steps (None: the checkpoint's)")
  parser.add_argument("--mode", choices=("clip", "rolling", "causal"), default=None,
                      help="clip (the ANS clips), rolling (the low-latency window) or causal (a causal student's "
                           "KV-cached window); None: the checkpoint's")
  parser.add_argument("--noisy", type=int, default=None, help="rolling mode: noisy frames in the window")
  parser.add_argument("--decode-context", dest="decode_context", type=int, default=None,
                      help="rolling mode: latent frames decoded together per frame (None: the checkpoint's)")
  parser.add_argument("--sets", nargs="+", choices=tuple(demo.SUITE), default=list(demo.SUITE),
                      help="held-out sets: formant speech, espeak-ng unseen languages+voices, English in unseen voices")
  args = parser.parse_args(argv)
  if args.num < 1 or (args.num < 2 and not args.vae):
    parser.error(f"--num must be >= 2 (the controls pair each clip with another; --vae: >= 1), got {args.num}")
  sample = {k: getattr(args, k) for k in demo.SAMPLING_KEYS if getattr(args, k) is not None}
  demo.score(args.ckpt, vae=args.vae, num=args.num, seconds=args.seconds, first=args.first, seed=args.seed,
             sample=sample, json_path=args.json, sets=tuple(args.sets))
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
