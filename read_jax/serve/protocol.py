"""The ``WS /v1/stream`` messages (docs/serving.md), typed and checked at the edge.

Client → server: a JSON ``start`` (:class:`Start`), binary PCM16 chunks and any number of ``interrupt``, then
``end`` or ``cancel`` (:class:`Control`). Server → client: ``ready``, ``clip`` + one binary message per block,
``interrupted`` once per ``interrupt``, ``done``, or one ``error`` and the close code. Anything else is a
:class:`ProtocolError` naming the field and the problem, which closes that session alone.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json

from read_jax import audio as audio_lib

SAMPLE_RATE = audio_lib.SAMPLE_RATE  # the only rate accepted: PCM16 LE mono at 16 kHz
FORMATS = ("raw", "fmp4")
MAX_SEED = 2**31
CONTROLS = ("end", "cancel", "interrupt")  # the text messages after the start
SUBPROTOCOL = "read.v1"  # what the server accepts when a client offers subprotocols (the page does)

# Close codes (RFC 6455 §7.4.1) the protocol uses.
NORMAL = 1000
GOING_AWAY = 1001  # the client left
UNSUPPORTED = 1003  # data the server cannot use: a binary start, an unreadable portrait, another sample rate
POLICY = 1008  # a protocol or limit violation: bad fields, audio after end, too long, idle, refused
TOO_BIG = 1009  # a message over Limits.max_message_bytes (or max_control_bytes after the start)
INTERNAL = 1011  # the server failed (a bug, a device error)
RESTART = 1012  # the server is shutting down and its drain time is over
TRY_LATER = 1013  # busy or draining: the same start may work later


class ProtocolError(Exception):
  """A session's fault, closing it with ``code`` and ``message`` (the one error the client sees)."""

  def __init__(self, code: int, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


@dataclasses.dataclass(frozen=True)
class Start:
  """The client's first message, checked; the portrait is still encoded (decoded after admission)."""

  portrait: bytes | None  # image file bytes; None: the server's default portrait
  format: str
  steps: int | None
  seed: int


@dataclasses.dataclass(frozen=True)
class Control:
  """``end`` (the audio is complete), ``cancel`` (stop now) or ``interrupt`` (drop the audio not yet used, go on
  with what comes after)."""

  type: str


def _reject_constant(name: str):
  raise ValueError(f"{name} is not a JSON number")


def _loads(text: str, what: str):
  """JSON → Python, or a ProtocolError: bad syntax, NaN/Infinity, nesting too deep for the parser (a RecursionError
  in the stdlib), or an integer with more digits than Python parses."""
  try:
    return json.loads(text, parse_constant=_reject_constant)
  except RecursionError:
    raise ProtocolError(POLICY, f"{what}: JSON nested too deeply") from None
  except ValueError as e:  # JSONDecodeError, NaN/Infinity, int digit limit
    raise ProtocolError(POLICY, f"{what}: not valid JSON ({_short(str(e))})") from None


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _short(text: str, n: int = 60) -> str:
  return text if len(text) <= n else text[:n] + "…"


def _describe(value) -> str:
  return _short(repr(value))


def parse_start(text: str, has_default_portrait: bool, server_steps: int) -> Start:
  """The ``start`` message → :class:`Start`, or a ProtocolError with the field and the problem."""
  msg = _loads(text, "start")
  if not isinstance(msg, dict) or msg.get("type") != "start":
    got = _describe(msg.get("type")) if isinstance(msg, dict) else f"a JSON {type(msg).__name__}"
    raise ProtocolError(POLICY, f"the first message must be {{\"type\": \"start\", ...}}, got {got}")
  unknown = sorted(set(msg) - {"type", "portrait", "sample_rate", "format", "steps", "seed"})
  if unknown:
    raise ProtocolError(POLICY, f"start: unknown fields {_describe(unknown)}")
  rate = msg.get("sample_rate", SAMPLE_RATE)
  if isinstance(rate, bool) or rate != SAMPLE_RATE:
    raise ProtocolError(UNSUPPORTED, f"start.sample_rate: only {SAMPLE_RATE} Hz PCM16 mono is accepted, got "
                                     f"{_describe(rate)}")
  fmt = msg.get("format", "raw")
  if fmt not in FORMATS:
    raise ProtocolError(UNSUPPORTED, f"start.format: must be one of {list(FORMATS)}, got {_describe(fmt)}")
  steps, seed = msg.get("steps"), msg.get("seed", 0)
  if steps is not None and (not _is_int(steps) or steps != server_steps):
    raise ProtocolError(POLICY, f"start.steps: this server samples {server_steps} steps per clip (null or "
                                f"{server_steps}), got {_describe(steps)}")
  if not _is_int(seed) or not 0 <= seed < MAX_SEED:
    raise ProtocolError(POLICY, f"start.seed: need an integer in [0, 2^31), got {_describe(seed)}")
  portrait = msg.get("portrait")
  if portrait is None:
    if not has_default_portrait:
      raise ProtocolError(POLICY, "start.portrait: required (a base64 image)")
    return Start(None, fmt, steps, seed)
  if not isinstance(portrait, str):
    raise ProtocolError(POLICY, f"start.portrait: need a base64 string, got a JSON {type(portrait).__name__}")
  return Start(decode_base64(portrait), fmt, steps, seed)


def decode_base64(portrait: str) -> bytes:
  """A base64 image or a data URL as a browser's FileReader gives it → bytes, or a ProtocolError (1003)."""
  if portrait.startswith("data:"):
    portrait = portrait.partition(",")[2]
  try:
    data = base64.b64decode(portrait, validate=True)
  except (binascii.Error, ValueError) as e:
    raise ProtocolError(UNSUPPORTED, f"start.portrait: not base64 ({_short(str(e))})") from None
  if not data:
    raise ProtocolError(UNSUPPORTED, "start.portrait: empty")
  return data


def parse_control(text: str) -> Control:
  """A text message after the start: ``end``, ``cancel`` or ``interrupt``, or a ProtocolError."""
  msg = _loads(text, "message")
  if not isinstance(msg, dict):
    raise ProtocolError(POLICY, f"a text message must be a JSON object (end, cancel or interrupt), got a JSON "
                                f"{type(msg).__name__}")
  kind = msg.get("type")
  if kind not in CONTROLS:
    raise ProtocolError(POLICY, f"unexpected message type {_describe(kind)} (expected binary PCM, end, cancel or "
                                "interrupt)")
  if set(msg) != {"type"}:
    raise ProtocolError(POLICY, f"{kind}: unknown fields {_describe(sorted(set(msg) - {'type'}))}")
  return Control(kind)


# ---------------------------------------------------------------------------------------------
# Server → client


def ready(session: str, size: int, fps: int, fmt: str, mime: str | None, mode: str) -> str:
  msg = {"type": "ready", "session": session, "width": size, "height": size, "fps": fps, "format": fmt,
         "sample_rate": SAMPLE_RATE, "mode": mode}
  if mime is not None:
    msg["mime"] = mime
  return json.dumps(msg)


def clip(index: int, first_frame: int, frames: int, size: int, latency: float | None) -> str:
  return json.dumps({"type": "clip", "index": index, "first_frame": first_frame, "frames": frames, "bytes": size,
                     "latency": None if latency is None else round(latency, 4)})


def interrupted(sample: int, dropped_seconds: float) -> str:
  """An ``interrupt`` applied: the session's audio now ends at ``sample`` (frame sample · fps / 16000 on shows the
  audio sent after it); ``dropped_seconds`` of audio sent before it were not used."""
  return json.dumps({"type": "interrupted", "sample": sample, "dropped_seconds": round(dropped_seconds, 4)})


def done(frames: int, cancelled: bool = False) -> str:
  msg = {"type": "done", "frames": frames}
  if cancelled:
    msg["cancelled"] = True
  return json.dumps(msg)


def error(code: int, message: str) -> str:
  return json.dumps({"type": "error", "message": message, "code": code})


def close_reason(message: str) -> str:
  """A close frame's reason: at most 123 bytes of UTF-8 (RFC 6455 §5.5), cut on a character boundary."""
  return message.encode()[:120].decode(errors="ignore")
