#!/usr/bin/env python
"""Be a LiveKit voice agent's avatar in one room: its speech in, lip-synced video and the same speech out
(docs/serving.md, "Behind a LiveKit voice agent"). Needs the livekit extra: pip install -e ".[livekit]".

  LIVEKIT_URL=wss://my-project.livekit.cloud LIVEKIT_TOKEN=<the avatar's token> python scripts/livekit_worker.py
  python scripts/livekit_worker.py --url ws://127.0.0.1:7880 --token TOKEN --ckpt DIR --portrait face.png

The agent's side is livekit-agents' usual one for an avatar worker: an AvatarSession that mints a token for the
avatar's identity (kind "agent", publishing on the agent's behalf), hands it to whatever starts this script, and
routes its TTS to the avatar with DataStreamAudioOutput. The worker compiles the model, joins, publishes video
and audio tracks at 25 fps and 16 kHz, and exits 0 when the agent leaves or the room closes.
"""

import os

import jax.numpy as jnp

from read_jax import cli
from read_jax.convert import checkpoint_dir
from read_jax.errors import CheckpointError
from read_jax.live import SESSIONS
from read_jax.pipeline import ReadPipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "assets", "demo")


def main(argv=None) -> int:
  p = cli.parser(__doc__)
  p.add_argument("--url", default=os.environ.get("LIVEKIT_URL"), help="the LiveKit server (default $LIVEKIT_URL)")
  p.add_argument("--token", default=None,
                 help="the avatar's access token (default $LIVEKIT_TOKEN, which keeps it out of the process list)")
  p.add_argument("--ckpt", default=DEMO, help="read_jax checkpoint directory (default: the bundled demo model)")
  p.add_argument("--portrait", default=os.path.join(DEMO, "reference.png"), help="the avatar's portrait")
  p.add_argument("--mode", choices=tuple(SESSIONS), default=None,
                 help="the live mode (default: the checkpoint's live_mode, pipeline.json)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  args = p.parse_args(argv)

  token = args.token or os.environ.get("LIVEKIT_TOKEN")
  if not args.url:
    return cli.fail("--url: the LiveKit server's URL is needed (or $LIVEKIT_URL)")
  if not token:
    return cli.fail("--token: the avatar's access token is needed (or $LIVEKIT_TOKEN)")
  if not os.path.isdir(args.ckpt):
    raise CheckpointError(f"--ckpt {args.ckpt}: no such checkpoint directory")
  checkpoint_dir.check_complete(args.ckpt)
  if not os.path.isfile(args.portrait):
    return cli.fail(f"--portrait {args.portrait}: no such file")
  from read_jax.serve import livekit  # the optional extra: its error names it

  cli.compilation_cache()
  pipe = ReadPipeline.from_pretrained(args.ckpt, dtype=getattr(jnp, args.dtype))
  livekit.run_worker(args.url, token, pipe, args.portrait, mode=args.mode, seed=args.seed)
  return 0


if __name__ == "__main__":
  cli.exit(cli.run(main))
