"""``scripts/serve.py`` as an operator runs it: the bundled demo on 127.0.0.1 and a free port with an API key and
JSON logs; /healthz and /readyz once the engine has compiled, the key asked of every other endpoint, a live
session over a real socket, then SIGTERM with the session open: the listening socket closes at once, the open
session still gets every frame and its done, the process exits 0 and leaves nothing in the temp folder; each
open and close is a JSON log line with the session's id. A bad option, or a non-loopback --host without a key,
is one error line and exit 2, before any model loads."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
websockets_sync = pytest.importorskip("websockets.sync.client")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "cli-test-key-0123456789abcdef"
pytestmark = pytest.mark.slow  # the demo's engine compiles at start (~15 s)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(tmp_path=None, **extra):
  """The test's environment for a server of one CPU device (conftest's 8 fake devices would make 8 lanes, each
  compiling), without a key unless given."""
  env = {k: v for k, v in os.environ.items() if k != "READ_JAX_API_KEY"}
  flags = env.get("XLA_FLAGS", "").split()
  env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(f for f in flags if "device_count" not in f), **extra)
  if tmp_path is not None:
    env["TMPDIR"] = str(tmp_path)
  return env


def test_serve_session_then_sigterm_drains(tmp_path):
  port = _free_port()
  log = open(tmp_path / "serve.log", "w+")
  proc = subprocess.Popen([sys.executable, os.path.join("scripts", "serve.py"), "--port", str(port),
                           "--batch-sizes", "1", "--max-sessions", "2", "--drain-seconds", "60", "--log-json"],
                          cwd=ROOT, env=_env(tmp_path, READ_JAX_API_KEY=KEY), stdout=log, stderr=subprocess.STDOUT,
                          text=True)
  base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {KEY}"}

  def output():
    log.seek(0)
    return log.read()

  health = None
  try:
    deadline = time.time() + 180
    while time.time() < deadline:
      assert proc.poll() is None, output()[-3000:]
      try:
        health = httpx.get(base + "/healthz", timeout=1)
        break
      except httpx.TransportError:
        time.sleep(0.5)
    assert health is not None, "no /healthz within 180 s:\n" + output()[-3000:]
    assert health.status_code == 200 and httpx.get(base + "/readyz").status_code == 200
    assert httpx.get(base + "/v1/info").status_code == 401
    assert httpx.get(base + "/v1/info", headers=auth).json()["max_sessions"] == 2
    with websockets_sync.connect(f"ws://127.0.0.1:{port}/v1/stream", additional_headers=auth, max_size=None) as ws:
      ws.send(json.dumps({"type": "start", "sample_rate": 16000, "format": "raw"}))  # the default portrait
      ready = json.loads(ws.recv())
      assert ready["type"] == "ready" and ready["fps"] == 25
      speech = (np.sin(np.arange(16000 * 4) * 2 * np.pi * 200 / 16000) * 8000).astype("<i2")
      ws.send(speech[:16000 * 3].tobytes())
      clip = json.loads(ws.recv(timeout=60))
      assert clip["type"] == "clip" and clip["first_frame"] == 0
      frames = [len(ws.recv(timeout=10)) // (ready["width"] * ready["height"] * 3)]
      assert frames[0] == clip["frames"]
      proc.send_signal(signal.SIGTERM)  # with the session still open
      deadline = time.time() + 10
      while time.time() < deadline:  # the listening socket closes within a tick
        try:
          socket.create_connection(("127.0.0.1", port), timeout=1).close()
          time.sleep(0.1)
        except OSError:
          break
      else:
        pytest.fail("the server still accepts connections after SIGTERM")
      ws.send(speech[16000 * 3:].tobytes())  # the open session goes on to its end
      ws.send(json.dumps({"type": "end"}))
      while (msg := json.loads(ws.recv(timeout=60)))["type"] == "clip":
        frames.append(len(ws.recv(timeout=10)) // (ready["width"] * ready["height"] * 3))
      assert msg == {"type": "done", "frames": 100} and sum(frames) == 100
    assert proc.wait(60) == 0, output()[-3000:]
  finally:
    if proc.poll() is None:
      proc.kill()
  lines = [json.loads(line) for line in output().splitlines() if line.startswith("{")]
  events = [(e["event"], e.get("session")) for e in lines]
  assert ("session.open", ready["session"]) in events and ("session.close", ready["session"]) in events
  close = next(e for e in lines if e["event"] == "session.close" and e.get("session") == ready["session"])
  assert close["code"] == 1000 and close["frames"] == 100
  assert [e for e in lines if e["event"] == "refused" and e["reason"] == "auth"]
  assert [e for e in lines if e["event"] == "server.drain"] and [e for e in lines if e["event"] == "server.drained"]
  assert KEY not in output()  # the key is never logged
  log.close()
  assert not [n for n in os.listdir(tmp_path) if n.startswith("read_jax_")]


def test_serve_bad_option_is_one_error_line():
  r = subprocess.run([sys.executable, os.path.join("scripts", "serve.py"), "--batch-sizes", "1,x"], cwd=ROOT,
                     env=_env(), capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and "Traceback" not in r.stderr
  lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and "--batch-sizes" in lines[0], r.stderr


def test_serve_refuses_the_network_without_a_key():
  """Nothing is bound: the check comes before the model loads."""
  r = subprocess.run([sys.executable, os.path.join("scripts", "serve.py"), "--host", "0.0.0.0", "--port", "1"],
                     cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and "Traceback" not in r.stderr
  lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and "API key" in lines[0] and "--insecure-no-auth" in lines[0], r.stderr
