#!/usr/bin/env python
"""Train the demo VAE (configs/demo_vae.py's model and loss) on synthetic frames drawn in memory, for a
fixed wall-clock budget, and write it in diffusers layout: the fast path for an accelerator.

  python scripts/train_demo_vae.py --out vae_dir --minutes 6          # then:
  python scripts/eval_demo.py --vae vae_dir                           # mouth r of its reconstructions
  python scripts/train_demo.py --vae vae_dir                          # uses it instead of training one
  python scripts/train_demo_vae.py --out causal_vae --causal --minutes 45 --batch 4 --lr 2e-4 --motion-weight 30
                                        # the bundled VAE's decoder fine-tuned causal (streaming decode)
  python scripts/train_demo_vae.py --out live_vae --causal --init causal_vae --student assets/demo_live \
      --minutes 30 --batch 4 --frames 33 --lr 5e-5 --motion-weight 30
                                        # then on the live model's own latents, decoded whole by the bundled VAE
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # read_jax without an install

from read_jax import cli  # noqa: E402
from read_jax.demo import vae  # noqa: E402
from read_jax.errors import InputError  # noqa: E402


def _ints(text: str, flag: str) -> tuple[int, ...]:
  try:
    return tuple(int(x) for x in text.split(",")) if text.strip() else ()
  except ValueError:
    raise InputError(f"{flag} {text}: need comma-separated integers, e.g. 8,16,32,32") from None


def main(argv=None) -> int:
  parser = cli.parser(__doc__ + "\n" + vae.__doc__)
  parser.add_argument("--out", required=True, help="output VAE directory (diffusers layout)")
  parser.add_argument("--minutes", type=float, default=6.0, help="wall-clock budget of the video steps")
  parser.add_argument("--steps", type=int, default=0, help="stop the video steps at this many instead (0: --minutes)")
  parser.add_argument("--image-minutes", type=float, default=0.0, help="single-frame steps first (wall clock)")
  parser.add_argument("--image-batch", type=int, default=64, help="frames per single-frame step")
  parser.add_argument("--batch", type=int, default=16, help="clips per step")
  parser.add_argument("--frames", type=int, default=17, help="frames per clip (1 + 8k)")
  parser.add_argument("--lr", type=float, default=5e-4)
  parser.add_argument("--pool", type=int, default=512, help="synthetic clips drawn up front (6 s each)")
  parser.add_argument("--init", default="", help="start from this VAE (diffusers layout, e.g. assets/demo/vae)")
  parser.add_argument("--latent-channels", type=int, default=0, help="override the config's (0: keep it)")
  parser.add_argument("--motion-weight", type=float, default=0.0,
                      help="weight the L1 of pixels that move (read_jax.models.vae.training_loss)")
  parser.add_argument("--temporal-weight", type=float, default=0.0,
                      help="also weight the L1 of frame-to-frame differences (read_jax.models.vae.training_loss)")
  parser.add_argument("--causal", action="store_true",
                      help="fine-tune the decoder of --init (default assets/demo/vae) causal, encoder frozen "
                           "(configs/demo_vae.py:causal)")
  parser.add_argument("--student", default="",
                      help="with --causal: also learn from this live checkpoint's own latents (e.g. assets/demo_live), "
                           "decoded whole by its VAE (read_jax.demo.vae.student_sequences)")
  parser.add_argument("--student-clips", type=int, default=64, help="--student: sequences drawn up front")
  parser.add_argument("--student-seconds", type=float, default=8.0, help="--student: speech per sequence")
  parser.add_argument("--student-fraction", type=float, default=0.5,
                      help="--student: the share of each batch's windows taken from its sequences")
  parser.add_argument("--decoder-widths", default="",
                      help="a narrower decoder than --init's, one width per decoder block (e.g. 8,16,32,32), started "
                           "from its leading channels")
  parser.add_argument("--decoder-layers", default="",
                      help="a shallower decoder than --init's, resnets per decoder block as the config lists them "
                           "(e.g. 0,1,1,1,1: none in the full-resolution block), started from its leading resnets")
  parser.add_argument("--anneal", action="store_true",
                      help="with --steps: the learning rate decays (cosine) to a tenth of --lr by the last step, "
                           "where a run otherwise keeps it nearly constant (e.g. the last run of a fine-tune)")
  parser.add_argument("--eval-clips", type=int, default=4, help="held-out clips scored at the end")
  parser.add_argument("--eval-seconds", type=float, default=4.0, help="length of each held-out clip")
  args = parser.parse_args(argv)
  vae.train_vae(args.out, minutes=args.minutes, steps=args.steps, image_minutes=args.image_minutes,
                image_batch=args.image_batch, batch=args.batch, frames=args.frames, lr=args.lr, pool=args.pool,
                init=args.init, latent_channels=args.latent_channels, motion_weight=args.motion_weight,
                causal=args.causal, eval_clips=args.eval_clips, eval_seconds=args.eval_seconds,
                student=args.student, student_clips=args.student_clips, student_seconds=args.student_seconds,
                student_fraction=args.student_fraction, temporal_weight=args.temporal_weight,
                decoder_widths=_ints(args.decoder_widths, "--decoder-widths"),
                decoder_layers=_ints(args.decoder_layers, "--decoder-layers"), anneal=args.anneal)
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
