"""Running the app: uvicorn with a connection cap, a drain on SIGTERM, a watchdog on the engine's lanes, and the
socket-level bounds that an ASGI app cannot set itself.

  code = serve(app, host="127.0.0.1", port=8000, drain_seconds=25, max_connections=64,
               ws_max_size=8 << 20)                                   # scripts/serve.py

* **Drain.** The first SIGTERM or SIGINT stops admissions (``/readyz`` 503, new starts 1013, POSTs 503) and
  closes the listening socket; open sessions and videos go on for up to ``drain_seconds``, then each open
  session gets one error and close 1012, and the server exits 0. A second signal exits at once.
* **Watchdog.** A device lane that died past its restarts (``Engine.stats()['lanes_dead']``) makes the
  process exit with :data:`EXIT_LANE_DEAD`, for its supervisor (systemd, Kubernetes) to restart it; the
  liveness probe (``/healthz``) says the same to an orchestrator that probes first.
* **Connections.** ``limit_concurrency`` caps connections and requests at once (uvicorn answers 503 past it),
  ``ws_max_size`` makes the WebSocket layer close an oversized message with 1009 before buffering it, and
  permessage-deflate is off: frames hardly compress, and deflating them would cost the event loop's CPU and a
  compressor's memory per connection.
* **Slow clients below the app.** A connection that has not sent a whole request head within
  ``header_timeout`` seconds is closed (uvicorn's h11 protocol waits for one forever: slowloris), and the
  listening socket's ``TCP_USER_TIMEOUT`` (by default ``Limits.send_timeout_seconds`` + 10 s) makes the kernel
  drop a connection whose client has stopped reading, so the last block the app could not send is not held
  after its session has closed (an ASGI app cannot abort its connection).
"""

from __future__ import annotations

import logging
import socket
import time

import uvicorn

from read_jax.serve.logs import LOGGER, event

EXIT_LANE_DEAD = 3  # the process exit code when a device lane is dead
FINAL_CLOSE_SECONDS = 1.0  # after the drain, the sessions' last error and close frames get this long
WATCH_TICKS = 10  # uvicorn ticks every 0.1 s: lanes and slow requests are looked at once a second
log = logging.getLogger(LOGGER)


class DrainingServer(uvicorn.Server):
  """uvicorn's server with the drain, the watchdog and the request-head timeout of the module docstring. uvicorn
  itself closes every WebSocket (1012) as soon as it shuts down, so the drain happens before its shutdown."""

  def __init__(self, config: uvicorn.Config, state, drain_seconds: float, header_timeout: float):
    super().__init__(config)
    self.serve_state = state  # the app's ServeState
    self.drain_seconds = drain_seconds
    self.header_timeout = header_timeout
    self.exit_code = 0
    self._drain_started: float | None = None
    self._closing_at: float | None = None
    self._listening_closed = False
    self._waiting: dict = {}  # (connection, its request cycle) → when it was first seen waiting for a request head

  def handle_exit(self, sig, frame):
    # Not uvicorn's: it re-raises the signal after its shutdown, which turns a clean stop into exit 143/130.
    if self._drain_started is not None:
      self.should_exit = True
      self.force_exit = True
      return
    self._drain_started = time.monotonic()  # a signal handler: only flags here, the work is in on_tick
    self.serve_state.drain()

  async def on_tick(self, counter: int) -> bool:
    if await super().on_tick(counter):
      return True
    state = self.serve_state
    if counter % WATCH_TICKS == 0:
      stats = state.engine.stats()
      if stats.get("lanes_dead", 0) or not stats.get("running", True):
        event(log, "server.lane_dead", level=logging.ERROR, lanes_dead=stats.get("lanes_dead", 0),
              running=stats.get("running"))
        self.exit_code = EXIT_LANE_DEAD
        return True
      self._close_slow_requests()
    if self._drain_started is None:
      return False
    if not self._listening_closed:
      self._listening_closed = True
      for server in getattr(self, "servers", []):
        server.close()  # no new connections; the open ones go on
      event(log, "server.drain", seconds=self.drain_seconds, sessions=state.live, videos=state.videos)
    now = time.monotonic()
    if self._closing_at is not None:
      return now >= self._closing_at or state.busy() == 0
    if state.busy() == 0:
      event(log, "server.drained", seconds=round(now - self._drain_started, 3))
      return True
    if now - self._drain_started >= self.drain_seconds:
      event(log, "server.drain_timeout", level=logging.WARNING, sessions=state.live, videos=state.videos)
      state.shutdown_sessions(f"the server is shutting down (its {self.drain_seconds:g} s drain is over)")
      self._closing_at = now + FINAL_CLOSE_SECONDS
    return False

  def _close_slow_requests(self) -> None:
    """Close HTTP connections that have waited over ``header_timeout`` for a whole request head (a connection
    with a request in progress is the app's to bound; WebSockets have their own timeouts)."""
    now, waiting = time.monotonic(), {}
    for conn in list(self.server_state.connections):
      if not hasattr(conn, "cycle"):  # not uvicorn's HTTP protocol: a WebSocket
        continue
      cycle = conn.cycle
      if cycle is not None and not cycle.response_complete:
        continue
      key = (id(conn), id(cycle))
      waiting[key] = first = self._waiting.get(key, now)
      if now - first > self.header_timeout:
        conn.transport.close()
        self.serve_state.metrics.refused.labels("slow_request").inc()
        client = getattr(conn, "client", None)
        event(log, "refused", level=logging.WARNING, reason="slow_request",
              client=f"{client[0]}:{client[1]}" if client else "?",
              message=f"no whole request head within {self.header_timeout:g} s")
    self._waiting = waiting


def make_server(app, *, host: str, port: int, drain_seconds: float, max_connections: int, ws_max_size: int,
                header_timeout: float = 10.0, unacked_timeout: float | None = None,
                log_config: dict | None = None) -> tuple[DrainingServer, socket.socket]:
  """The server for ``app`` (``create_app``'s) and its bound listening socket: ``server.run(sockets=[sock])``.
  ``unacked_timeout``: seconds the kernel keeps a connection whose sent data is not taken (TCP_USER_TIMEOUT)."""
  config = uvicorn.Config(app, host=host, port=port, ws_max_size=ws_max_size, limit_concurrency=max_connections,
                          timeout_graceful_shutdown=2, timeout_keep_alive=5, log_config=log_config,
                          server_header=False, ws_per_message_deflate=False)
  state = app.state.serve
  sock = config.bind_socket()
  if unacked_timeout is None:  # after the app's own send timeout and its last error message
    unacked_timeout = state.limits.send_timeout_seconds + 10
  if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux: accepted connections inherit it
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(unacked_timeout * 1000))
  return DrainingServer(config, state, drain_seconds, header_timeout), sock


def serve(app, *, host: str, port: int, drain_seconds: float, max_connections: int, ws_max_size: int,
          header_timeout: float = 10.0, log_config: dict | None = None) -> int:
  """Run ``app`` until SIGTERM/SIGINT has drained it or a lane died; the exit code."""
  server, sock = make_server(app, host=host, port=port, drain_seconds=drain_seconds, max_connections=max_connections,
                             ws_max_size=ws_max_size, header_timeout=header_timeout, log_config=log_config)
  try:
    server.run(sockets=[sock])
  finally:
    sock.close()
  return server.exit_code
