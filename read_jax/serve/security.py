"""Who may talk to the server (docs/serving.md, "Security model"): trusted hosts, an Origin allowlist and an API
key, checked in one ASGI middleware before any route runs.

* **Host.** A request whose ``Host`` is not one the server answers to is refused (400): a DNS-rebinding page
  reaches a loopback server under its own name, and this is what stops it reading answers.
* **Origin.** A browser sends ``Origin`` with every WebSocket handshake and every cross-site POST; it must be
  the server's own (the same host and port as ``Host``) or on the allowlist (403), so a page the operator
  visits cannot drive ``/v1/stream`` or ``POST /v1/videos`` (cross-site WebSocket hijacking). Clients that
  are not browsers send no Origin and are judged by their key alone.
* **Key.** With an API key set, every endpoint but the health probes and the page's static files needs it
  (401): ``Authorization: Bearer <key>``, or, for a browser's WebSocket (which cannot set headers), the
  subprotocol ``bearer.<key>`` next to ``read.v1`` in ``Sec-WebSocket-Protocol``. Keys are compared in
  constant time (as SHA-256 digests, so not even their length shows).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from read_jax.errors import ConfigError

KEY_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,256}")  # what fits in a subprotocol token (RFC 6455 §4.1)
KEY_SUBPROTOCOL = "bearer."  # a browser's key: Sec-WebSocket-Protocol: read.v1, bearer.<key>
PROBES = ("/healthz", "/readyz")  # open to anyone on any Host: orchestrators probe by pod IP
PUBLIC = ("/", "/static/")  # the page and its script: nothing of the operator's, and they must load to ask for the key
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
REQUEST_ID_HEADER = b"x-request-id"
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
               "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")


@dataclasses.dataclass(frozen=True)
class Security:
  """Who the app answers (module docstring). ``create_app``'s default: no key, loopback names only."""

  api_key: str | None = None  # None: no key asked (scripts/serve.py allows that on loopback only)
  allowed_origins: tuple[str, ...] = ()  # besides the server's own origin; "*": any
  trusted_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # Host header names (no port) answered; "*": any

  def __post_init__(self):
    if self.api_key is not None and not KEY_PATTERN.fullmatch(self.api_key):
      raise ConfigError("api key: need 16 to 256 characters of A-Z a-z 0-9 . _ ~ - (it travels in a WebSocket "
                        "subprotocol); make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    for origin in self.allowed_origins:
      if origin != "*" and normal_origin(origin) is None:
        raise ConfigError(f"allowed origin {origin!r}: need scheme://host[:port], e.g. https://app.example.com")

  def key_matches(self, candidate: str | None) -> bool:
    """Constant time: both sides hashed to 32 bytes, then compared with ``hmac.compare_digest``."""
    if self.api_key is None:
      return True
    if candidate is None:
      return False
    digest = hashlib.sha256(candidate.encode("utf-8", "replace")).digest()
    return hmac.compare_digest(digest, hashlib.sha256(self.api_key.encode()).digest())


def is_loopback(host: str) -> bool:
  """Whether binding ``host`` keeps the server on this machine."""
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host.strip("[]")).is_loopback
  except ValueError:
    return False


def new_request_id() -> str:
  return secrets.token_hex(6)


def normal_origin(origin: str) -> str | None:
  """``scheme://host[:port]`` lower-cased, without a default port; None when it is not an origin."""
  try:
    parts = urlsplit(origin.strip())
    port = parts.port
  except ValueError:
    return None
  if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
    return None
  default = {"http": 80, "https": 443}[parts.scheme]
  host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
  return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


def _host_name(host: str) -> str:
  """The name of a Host header value without its port: ``[::1]:8000`` → ``::1``."""
  host = host.strip().lower()
  if host.startswith("["):
    return host[1:host.find("]")] if "]" in host else host
  return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _netloc(host: str, scheme: str) -> str:
  """host[:port] of a Host header value, without the default port of ``scheme``."""
  host = host.strip().lower()
  default = {"http": ":80", "ws": ":80", "https": ":443", "wss": ":443"}.get(scheme, "")
  return host[:-len(default)] if default and host.endswith(default) else host


class SecurityMiddleware:
  """The checks of the module docstring around an ASGI app; ``on_refused(reason, scope, message)`` is told of each
  refusal (metrics, logs). Every request also gets an id (``scope["state"]["request_id"]``, ``X-Request-Id``)."""

  def __init__(self, app, security: Security, on_refused: Callable[[str, dict, str], None]):
    self.app = app
    self.security = security
    self.on_refused = on_refused
    self.origins = {normal_origin(o) for o in security.allowed_origins if o != "*"}
    self.any_origin = "*" in security.allowed_origins
    self.hosts = {h.lower().strip("[]") for h in security.trusted_hosts}

  async def __call__(self, scope, receive, send):
    if scope["type"] not in ("http", "websocket"):
      return await self.app(scope, receive, send)
    request_id = new_request_id()
    scope.setdefault("state", {})["request_id"] = request_id
    if scope["type"] == "http":
      send = _with_headers(send, scope["path"], request_id)
    path = scope["path"]
    if path in PROBES:
      return await self.app(scope, receive, send)
    headers = _headers(scope)
    refusal = self.check(scope, headers)
    if refusal is not None:
      status, reason, message = refusal
      self.on_refused(reason, scope, message)
      return await _refuse(scope, receive, send, status, message)
    if scope["type"] == "websocket":
      offered = scope.get("subprotocols") or []
      scope = dict(scope, subprotocols=[p for p in offered if not p.startswith(KEY_SUBPROTOCOL)])  # never echoed
    return await self.app(scope, receive, send)

  def check(self, scope, headers) -> tuple[int, str, str] | None:
    """(status, reason, message) of the first check the request fails, else None."""
    host = headers.get("host", "")
    if "*" not in self.hosts and _host_name(host) not in self.hosts:
      return 400, "host", f"Host {host[:80]!r} is not a name this server answers to (scripts/serve.py --allowed-hosts)"
    path = scope["path"]
    if scope["type"] == "http" and (path == "/" or path.startswith("/static/")) and scope["method"] in ("GET", "HEAD"):
      return None
    origin = headers.get("origin")
    if origin is not None and (scope["type"] == "websocket" or scope["method"] not in ("GET", "HEAD", "OPTIONS")):
      if not self._origin_allowed(origin, host, scope["scheme"]):
        return 403, "origin", (f"Origin {origin[:80]!r} may not use this server (its own origin or "
                               "scripts/serve.py --allowed-origins)")
    if self.security.api_key is not None and not self.security.key_matches(_key(scope, headers)):
      return 401, "auth", "missing or wrong API key (Authorization: Bearer <key>)"
    return None

  def _origin_allowed(self, origin: str, host: str, scheme: str) -> bool:
    if self.any_origin:
      return True
    normal = normal_origin(origin)
    if normal is None:
      return False
    if normal in self.origins:
      return True
    # The server's own origin: the page it served. The scheme may differ behind a TLS proxy; the host and port
    # are what a foreign page cannot share (and Host itself passed the trusted-host check).
    origin_scheme = normal.split("://", 1)[0]
    return normal.split("://", 1)[1] == _netloc(host, origin_scheme) or \
        normal.split("://", 1)[1] == _netloc(host, scheme)


def _headers(scope) -> dict[str, str]:
  out = {}
  for name, value in scope.get("headers", []):
    key = name.decode("latin-1").lower()
    text = value.decode("latin-1")
    out[key] = out[key] + ", " + text if key in out else text
  return out


def _key(scope, headers) -> str | None:
  """The key the client sent: a Bearer header, else (WebSocket) a ``bearer.<key>`` subprotocol."""
  auth = headers.get("authorization", "")
  scheme, _, value = auth.partition(" ")
  if scheme.lower() == "bearer" and value.strip():
    return value.strip()
  if scope["type"] == "websocket":
    for protocol in scope.get("subprotocols") or []:
      if protocol.startswith(KEY_SUBPROTOCOL):
        return protocol[len(KEY_SUBPROTOCOL):]
  return None


def _with_headers(send, path: str, request_id: str):
  """``send`` adding the request id and the headers that keep a browser from framing, sniffing or leaking."""

  async def wrapped(message):
    if message["type"] == "http.response.start":
      headers = list(message.get("headers", []))
      names = {name.lower() for name, _ in headers}
      extra = [(REQUEST_ID_HEADER, request_id.encode()), (b"x-content-type-options", b"nosniff"),
               (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]
      if path == "/":
        extra.append((b"content-security-policy", PAGE_POLICY.encode()))
      if not path.startswith("/static/"):
        extra.append((b"cache-control", b"no-store"))
      headers += [(name, value) for name, value in extra if name not in names]
      message = dict(message, headers=headers)
    await send(message)

  return wrapped


async def _refuse(scope, receive, send, status: int, message: str) -> None:
  body = json.dumps({"error": message}).encode()
  headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
  if status == 401:
    headers.append((b"www-authenticate", b'Bearer realm="read_jax"'))
  if scope["type"] == "http":
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return
  await receive()  # websocket.connect
  if "websocket.http.response" in scope.get("extensions", {}):
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
  else:  # a server without denial responses: the handshake fails with 403
    await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
