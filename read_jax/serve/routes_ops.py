"""What an orchestrator and an operator ask: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics``,
``/v1/info``.

* ``/healthz`` is 200 while the process can serve at all and 503 once it cannot recover by itself (the engine
  stopped, or a device lane died past its restarts): a liveness probe then restarts the process.
* ``/readyz`` is 200 while new sessions are admitted and 503 while draining or while any lane is down: a
  readiness probe then routes new clients to other replicas, and the open sessions go on.
Both are open to anyone (no key, any Host) and say only that; ``/v1/info`` has the details, behind the key.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from read_jax.serve import fmp4
from read_jax.serve import protocol as proto
from read_jax.serve.metrics import CONTENT_TYPE
from read_jax.serve.state import ServeState

router = APIRouter()


def liveness(state: ServeState) -> tuple[bool, str]:
  stats = state.engine.stats()
  if not stats.get("running", False):
    return False, "the engine is stopped"
  if stats.get("lanes_dead", 0):
    return False, f"{stats['lanes_dead']} device lane(s) dead"
  return True, "ok"


def readiness(state: ServeState) -> tuple[bool, str]:
  alive, why = liveness(state)
  if not alive:
    return False, why
  if state.draining:
    return False, "draining"
  stats = state.engine.stats()
  if stats.get("lanes_alive", 1) < stats.get("devices", 1):
    return False, "a device lane is restarting"
  return True, "ready"


@router.get("/healthz")
async def healthz(request: Request):
  ok, why = liveness(request.app.state.serve)
  return JSONResponse({"status": why}, status_code=200 if ok else 503)


@router.get("/readyz")
async def readyz(request: Request):
  ok, why = readiness(request.app.state.serve)
  return JSONResponse({"status": why}, status_code=200 if ok else 503)


@router.get("/v1/info")
async def info(request: Request):
  state: ServeState = request.app.state.serve
  return {"sessions": state.live, "max_sessions": state.limits.max_sessions, "videos": state.videos,
          "max_videos": state.limits.max_videos, "width": state.size, "height": state.size, "fps": state.fps,
          "sample_rate": proto.SAMPLE_RATE, "steps": state.engine.steps, "mode": state.engine.mode,
          "seconds_per_block": state.engine.unit_duration, "formats": list(proto.FORMATS),
          "mime": fmp4.MIME, "default_portrait": state.default_portrait is not None,
          "max_session_seconds": state.limits.max_session_seconds}


@router.get("/metrics")
async def metrics(request: Request):
  return Response(request.app.state.serve.metrics.render(), media_type=CONTENT_TYPE)
