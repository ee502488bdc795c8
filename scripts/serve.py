#!/usr/bin/env python
"""Serve live talking-head sessions over WebSocket and HTTP (docs/serving.md).

  python scripts/serve.py                              # the bundled demo model on http://127.0.0.1:8000/
  python scripts/serve.py --ckpt DIR --host 0.0.0.0 --port 8080 --max-sessions 8 --batch-sizes 1,2,4,8   # batching on a GPU

Endpoints: WS /v1/stream (live), POST /v1/videos (portrait + audio → mp4), GET /healthz, GET /metrics, the page
at /. The engine compiles its batch sizes before the server listens. SIGTERM or Ctrl-C: the listening socket
closes, open sessions are cancelled (their clients get close code 1012 from uvicorn), exit code 0.
"""

import os

import jax
import jax.numpy as jnp
import uvicorn

from read_jax import cli
from read_jax.convert import checkpoint_dir
from read_jax.errors import CheckpointError, InputError
from read_jax.pipeline import ReadPipeline
from read_jax.serve.app import Limits, create_app
from read_jax.serve.engine import Engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "assets", "demo")


def main(argv=None) -> int:
  p = cli.parser(__doc__)
  p.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0: every interface)")
  p.add_argument("--port", type=int, default=8000)
  p.add_argument("--ckpt", default=DEMO, help="read_jax checkpoint directory (default: the bundled demo model)")
  p.add_argument("--portrait", default=os.path.join(DEMO, "reference.png"),
                 help="the default portrait (sessions that send none, the page's first picture)")
  p.add_argument("--max-sessions", type=int, default=4, help="live sessions at once")
  p.add_argument("--batch-sizes", default="",
                 help="batch sizes the engine compiles at start-up (default: 1 on a CPU, where batching measured "
                      "slower (docs/serving.md), else 1,2,4,8)")
  p.add_argument("--steps", type=int, default=None, help="denoiser passes per clip (default: the checkpoint's)")
  p.add_argument("--max-message-bytes", type=int, default=8 << 20, help="largest WebSocket message")
  p.add_argument("--max-session-seconds", type=float, default=600.0, help="longest session (seconds of audio)")
  p.add_argument("--idle-timeout", type=float, default=10.0, help="seconds without a message before a close")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  args = p.parse_args(argv)

  try:
    default = "1" if jax.default_backend() == "cpu" else "1,2,4,8"
    batch_sizes = tuple(sorted({int(b) for b in (args.batch_sizes or default).split(",")}))
  except ValueError:
    raise InputError(f"--batch-sizes {args.batch_sizes!r}: need comma-separated integers") from None
  if not os.path.isdir(args.ckpt):
    raise CheckpointError(f"--ckpt {args.ckpt}: no such checkpoint directory")
  checkpoint_dir.check_complete(args.ckpt)
  with open(args.portrait, "rb") as f:
    portrait = f.read()
  limits = Limits(max_sessions=args.max_sessions, max_message_bytes=args.max_message_bytes,
                  max_session_seconds=args.max_session_seconds, idle_timeout_seconds=args.idle_timeout)

  cli.compilation_cache()
  pipe = ReadPipeline.from_pretrained(args.ckpt, dtype=getattr(jnp, args.dtype))
  engine = Engine(pipe, batch_sizes=batch_sizes, max_sessions=args.max_sessions, steps=args.steps)
  engine.start()
  app = create_app(engine, pipe, limits, default_portrait=portrait)
  config = uvicorn.Config(app, host=args.host, port=args.port, ws_max_size=args.max_message_bytes + 4096,
                          timeout_graceful_shutdown=5, log_level="info")
  server = _Server(config)
  try:
    server.run()
  finally:
    engine.stop(cancel=True)
  return 0


class _Server(uvicorn.Server):
  """uvicorn's server, except that SIGTERM/SIGINT only stop it: uvicorn re-raises the signal after its graceful
  shutdown, which would turn a clean stop into exit code 143/130."""

  def handle_exit(self, sig, frame):
    if self.should_exit:
      self.force_exit = True
    self.should_exit = True


if __name__ == "__main__":
  cli.exit(cli.run(main))
