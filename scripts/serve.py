#!/usr/bin/env python
"""Serve live talking-head sessions over WebSocket and HTTP (docs/serving.md).

  python scripts/serve.py                              # the bundled live model (causal) on http://127.0.0.1:8000/
  READ_JAX_API_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') \\
    python scripts/serve.py --ckpt DIR --host 0.0.0.0 --port 8080 --allowed-hosts avatar.example.com \\
    --max-sessions 8 --batch-sizes 1,2,4,8 --log-json          # on a GPU, behind a TLS proxy

Endpoints: WS /v1/stream (live), POST /v1/videos (portrait + audio → mp4), GET /healthz (liveness), /readyz
(readiness), /metrics, /v1/info, the page at /. Every endpoint but the probes and the page needs the API key
when one is set (--api-key or $READ_JAX_API_KEY); binding anything but loopback without one is refused unless
--insecure-no-auth. The engine compiles its batch sizes before the server listens. SIGTERM or Ctrl-C: no new
sessions, open ones finish within --drain-seconds (then close 1012), exit code 0; a device lane that dies past
its restarts exits with code 3. Sessions run in the checkpoint's live mode (pipeline.json live_mode: the
bundled live model's is the causal window) unless --mode says otherwise; /v1/info and the page show it.
"""

import os

import jax
import jax.numpy as jnp

from read_jax import cli
from read_jax.convert import checkpoint_dir
from read_jax.errors import CheckpointError, InputError
from read_jax.live import SESSIONS
from read_jax.pipeline import ReadPipeline
from read_jax.serve import logs, server
from read_jax.serve.app import Limits, Security, create_app
from read_jax.serve.engine import Engine
from read_jax.serve.security import LOOPBACK_HOSTS, is_loopback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "assets", "demo")
DEMO_LIVE = os.path.join(ROOT, "assets", "demo_live")  # the demo's causal 2-step student, its live model
KEY_ENV = "READ_JAX_API_KEY"


def main(argv=None) -> int:
  p = cli.parser(__doc__)
  p.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0: every interface; needs a key)")
  p.add_argument("--port", type=int, default=8000)
  p.add_argument("--ckpt", default=DEMO_LIVE if os.path.isdir(DEMO_LIVE) else DEMO,
                 help="read_jax checkpoint directory (default: the bundled live model, assets/demo_live: the demo's "
                      "causal 2-step student)")
  p.add_argument("--portrait", default=os.path.join(DEMO, "reference.png"),
                 help="the default portrait (sessions that send none, the page's first picture)")
  p.add_argument("--api-key", default=None,
                 help=f"the key clients send (Authorization: Bearer); default ${KEY_ENV}, which keeps it out of "
                      "the process list")
  p.add_argument("--insecure-no-auth", action="store_true",
                 help="serve a non-loopback --host without a key (anyone who reaches the port can use it)")
  p.add_argument("--allowed-origins", default="",
                 help="comma-separated scheme://host[:port] of pages that may use the API besides the server's own "
                      "('*': any)")
  p.add_argument("--allowed-hosts", default="",
                 help="comma-separated Host names the server answers to ('*': any); default: the loopback names, "
                      "and any name when --host is not loopback (the key protects it)")
  p.add_argument("--max-sessions", type=int, default=4, help="live sessions at once")
  p.add_argument("--max-videos", type=int, default=2, help="POST /v1/videos at once (more: 429)")
  p.add_argument("--max-connections", type=int, default=64,
                 help="connections and requests at once (uvicorn's limit_concurrency; more: 503)")
  p.add_argument("--batch-sizes", default="",
                 help="batch sizes the engine compiles at start-up (default: 1 on a CPU, where batching measured "
                      "slower (docs/serving.md), else 1,2,4,8)")
  p.add_argument("--steps", type=int, default=None, help="denoiser passes per clip (default: the checkpoint's)")
  p.add_argument("--mode", choices=tuple(SESSIONS), default=None,
                 help="how sessions generate: clip (ANS clips, the first frame a clip behind the speech), rolling "
                      "(the rolling window, a latent frame at a time) or causal (a causal student's KV-cached "
                      "window); default: the checkpoint's live_mode (pipeline.json)")
  p.add_argument("--max-message-bytes", type=int, default=8 << 20, help="largest WebSocket message")
  p.add_argument("--max-session-seconds", type=float, default=600.0, help="longest session or video (seconds of "
                 "audio)")
  p.add_argument("--session-deadline", type=float, default=720.0, help="longest session, wall-clock seconds")
  p.add_argument("--idle-timeout", type=float, default=10.0,
                 help="seconds without audio, end or cancel before a close (empty messages do not count)")
  p.add_argument("--send-timeout", type=float, default=30.0,
                 help="seconds a block may wait for a client that does not read before its session closes")
  p.add_argument("--header-timeout", type=float, default=10.0,
                 help="seconds a connection may take to send a whole request head (slow clients: closed)")
  p.add_argument("--drain-seconds", type=float, default=25.0,
                 help="after SIGTERM, how long open sessions may finish (keep it under the orchestrator's grace)")
  p.add_argument("--log-json", action="store_true", help="logs as JSON lines (one per open, close, error, video)")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  args = p.parse_args(argv)

  key = args.api_key or os.environ.get(KEY_ENV) or None
  loopback = is_loopback(args.host)
  if not loopback and key is None and not args.insecure_no_auth:
    return cli.fail(f"--host {args.host}: serving beyond this machine needs an API key (--api-key or ${KEY_ENV}); "
                    "--insecure-no-auth to serve it open")
  hosts = _names(args.allowed_hosts) or (LOOPBACK_HOSTS if loopback else ("*",))
  security = Security(api_key=key, allowed_origins=_names(args.allowed_origins), trusted_hosts=hosts)
  try:
    default = "1" if jax.default_backend() == "cpu" else "1,2,4,8"
    batch_sizes = tuple(sorted({int(b) for b in (args.batch_sizes or default).split(",")}))
  except ValueError:
    raise InputError(f"--batch-sizes {args.batch_sizes!r}: need comma-separated integers") from None
  limits = Limits(max_sessions=args.max_sessions, max_message_bytes=args.max_message_bytes,
                  max_session_seconds=args.max_session_seconds, max_session_wall_seconds=args.session_deadline,
                  idle_timeout_seconds=args.idle_timeout, send_timeout_seconds=args.send_timeout,
                  max_videos=args.max_videos)
  if not os.path.isdir(args.ckpt):
    raise CheckpointError(f"--ckpt {args.ckpt}: no such checkpoint directory")
  checkpoint_dir.check_complete(args.ckpt)
  with open(args.portrait, "rb") as f:
    portrait = f.read()

  log_config = logs.config(json_lines=args.log_json)
  cli.compilation_cache()
  pipe = ReadPipeline.from_pretrained(args.ckpt, dtype=getattr(jnp, args.dtype))
  engine = Engine(pipe, batch_sizes=batch_sizes, max_sessions=args.max_sessions + args.max_videos, steps=args.steps,
                  mode=args.mode)
  engine.start()
  try:
    app = create_app(engine, pipe, limits, default_portrait=portrait, security=security)
    return server.serve(app, host=args.host, port=args.port, drain_seconds=args.drain_seconds,
                        max_connections=args.max_connections, ws_max_size=args.max_message_bytes + 4096,
                        header_timeout=args.header_timeout, log_config=log_config)
  finally:
    engine.stop(cancel=True)


def _names(text: str) -> tuple[str, ...]:
  return tuple(name.strip() for name in text.split(",") if name.strip())


if __name__ == "__main__":
  cli.exit(cli.run(main))
