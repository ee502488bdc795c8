"""``WS /v1/stream``: a live session (``sessions.serve_stream``; the messages in ``protocol``)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from read_jax.serve.sessions import serve_stream

router = APIRouter()


@router.websocket("/v1/stream")
async def stream(ws: WebSocket):
  await serve_stream(ws, ws.app.state.serve)
