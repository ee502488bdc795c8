"""The HTTP and WebSocket front of the serving engine (docs/serving.md): one app factory, no globals.

  app = create_app(engine, pipe, Limits(max_sessions=4), security=Security(api_key=KEY))
  uvicorn.run(app, host="127.0.0.1", port=8000)        # or read_jax.serve.server.serve(...): drain, watchdog

* ``WS /v1/stream`` — a live session (``sessions``, messages in ``protocol``).
* ``POST /v1/videos`` — multipart portrait + audio → an mp4 (``routes_videos``, ``videos``).
* ``GET /healthz`` (liveness), ``/readyz`` (readiness), ``/metrics`` (prometheus), ``/v1/info`` (``routes_ops``).
* ``GET /`` the page, ``/v1/portrait`` the default portrait (``routes_page``).

Every request passes ``security.SecurityMiddleware`` first (trusted Host, Origin allowlist, API key); every
bound is in ``limits.Limits``. The event loop only moves bytes: generation runs on the engine's lane threads,
portraits, ``engine.open`` and fMP4 encoding in the app's session pool, videos in its own video pool.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from read_jax import media
from read_jax.pipeline import ReadPipeline
from read_jax.serve import routes_ops, routes_page, routes_stream, routes_videos
from read_jax.serve.engine import Engine
from read_jax.serve.limits import Limits
from read_jax.serve.logs import LOGGER, event
from read_jax.serve.metrics import ServeMetrics
from read_jax.serve.protocol import (FORMATS, INTERNAL, POLICY, RESTART, SAMPLE_RATE, TOO_BIG, TRY_LATER,  # noqa: F401
                                     UNSUPPORTED, ProtocolError, parse_start)
from read_jax.serve.routes_page import STATIC
from read_jax.serve.security import Security, SecurityMiddleware, normal_origin
from read_jax.serve.state import ServeState
from read_jax.serve.uploads import decode_portrait


def create_app(engine: Engine, pipe: ReadPipeline, limits: Limits = Limits(), *, default_portrait: bytes | None = None,
               security: Security = Security(), log: logging.Logger | None = None) -> FastAPI:
  """The FastAPI app around a started ``engine`` (live sessions and videos) and its ``pipe`` (the frame size and
  rate). ``default_portrait``: image bytes used when a ``start`` has no portrait, and served at ``/v1/portrait``
  for the page (``scripts/serve.py`` passes the demo reference). ``security``: who may talk to it (default: no
  key, loopback Host names only, the server's own Origin)."""
  # imageio-ffmpeg (media.VideoWriter, POST /v1/videos) starts ffmpeg with a preexec_fn, which runs Python in
  # the forked child: in a server's many threads that child can hang for good on a lock another thread held at
  # the fork (imageio-ffmpeg's own switch turns it off; it only shields ffmpeg from a Ctrl-C we handle anyway).
  os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")
  default_image = None
  if default_portrait is not None:
    default_image = decode_portrait(default_portrait, "default portrait", media.MAX_IMAGE_PIXELS)
  state = ServeState(engine, pipe, limits, security, default_portrait, default_image,
                     log=log or logging.getLogger(LOGGER))
  state.metrics = ServeMetrics(engine.stats, state.app_gauges)
  state.session_pool = concurrent.futures.ThreadPoolExecutor(limits.max_sessions + 2, "read-serve-session")
  state.video_pool = concurrent.futures.ThreadPoolExecutor(limits.max_videos, "read-serve-video")

  @contextlib.asynccontextmanager
  async def lifespan(app):
    yield
    state.close()

  app = FastAPI(title="read_jax", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
  app.state.serve = state
  app.state.limits = limits
  app.state.metrics = state.metrics
  app.include_router(routes_page.router)
  app.include_router(routes_ops.router)
  app.include_router(routes_videos.router)
  app.include_router(routes_stream.router)
  app.mount("/static", StaticFiles(directory=STATIC), name="static")

  def refused(reason: str, scope: dict, message: str) -> None:
    state.metrics.refused.labels(reason).inc()
    client = scope.get("client")
    event(state.log, "refused", level=logging.WARNING, request=scope.get("state", {}).get("request_id", ""),
          client=f"{client[0]}:{client[1]}" if client else "?", path=scope.get("path", ""), reason=reason,
          message=message)

  app.add_middleware(SecurityMiddleware, security=security, on_refused=refused)
  if security.allowed_origins:  # outside the key check: a browser's CORS preflight carries no key
    origins = ["*"] if "*" in security.allowed_origins else [normal_origin(o) for o in security.allowed_origins]
    app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                       allow_headers=["authorization"], max_age=600)

  @app.exception_handler(Exception)
  async def fault(request: Request, exc: Exception):  # a bug in a route: this request only, logged with its id
    state.metrics.errors.labels("http").inc()
    event(state.log, "http.error", level=logging.ERROR, exc_info=exc, path=request.url.path,
          request=request.scope.get("state", {}).get("request_id", ""))
    return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

  return app


__all__ = ["FORMATS", "INTERNAL", "POLICY", "RESTART", "SAMPLE_RATE", "TOO_BIG", "TRY_LATER", "UNSUPPORTED", "Limits",
           "ProtocolError", "Security", "create_app", "parse_start"]
