"""The page at ``/`` (``static/index.html`` + ``static/app.js``) and the default portrait it shows.

The page and its script are public (they must load to ask for the key); ``/v1/portrait`` is behind the key
like every other endpoint.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from read_jax.serve.uploads import image_mime

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

router = APIRouter()


@router.get("/")
async def index():
  return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html; charset=utf-8")


@router.get("/v1/portrait")
async def portrait(request: Request):
  data = request.app.state.serve.default_portrait
  if data is None:
    return JSONResponse({"error": "no default portrait on this server"}, status_code=404)
  return Response(data, media_type=image_mime(data))
