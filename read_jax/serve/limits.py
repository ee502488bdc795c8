"""What one client may ask of the server (docs/serving.md, "Limits"): every buffer and every wait has a bound here.

A limit that is passed closes or refuses only the session or request that passed it, with the limit's name in
the reason.
"""

from __future__ import annotations

import dataclasses

from read_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Limits:
  """Bounds of one app (``create_app(..., limits)``); ``scripts/serve.py`` sets them from its options."""

  max_sessions: int = 4  # live sessions at once (the engine may refuse earlier: admission by step time)
  max_message_bytes: int = 8 << 20  # one WebSocket message (the start message carries the portrait)
  max_control_bytes: int = 1024  # a text message after the start (end, cancel)
  max_session_seconds: float = 600.0  # audio per session and per POST /v1/videos, seconds (decoded samples)
  max_session_wall_seconds: float = 720.0  # wall-clock life of a session from its start message, seconds
  idle_timeout_seconds: float = 10.0  # no audio or control message for this long closes the session
  max_messages_per_second: float = 400.0  # a session's messages are read no faster (tiny-frame floods slow down)
  max_audio_ahead_seconds: float = 10.0  # audio passed to the engine ahead of the frames sent (at least 2 units)
  max_pending_blocks: int = 2  # blocks generated for a session and not yet sent; its generation pauses there
  send_timeout_seconds: float = 30.0  # a block the client does not take for this long closes the session
  max_portrait_pixels: int = 4096 * 4096  # width · height of a portrait, checked from its header
  max_upload_bytes: int = 32 << 20  # each file of POST /v1/videos (the body: both files and the fields)
  max_videos: int = 2  # POST /v1/videos in flight; more are answered 429
  upload_timeout_seconds: float = 120.0  # the body of one POST /v1/videos must arrive within this (else 408)
  video_deadline_seconds: float = 600.0  # one POST /v1/videos from its body to its answer, seconds

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if not value > 0:
        raise ConfigError(f"Limits.{field.name}: need a positive number, got {value!r}")

  @property
  def max_body_bytes(self) -> int:
    """POST /v1/videos body: two files and a few small fields with their multipart headers."""
    return 2 * self.max_upload_bytes + (64 << 10)
