"""``scripts/serve.py`` as an operator runs it: the bundled demo on 127.0.0.1 and a free port, /healthz once the
engine has compiled, a live session over a real socket, then SIGTERM with the session open: the client's socket
is closed, the process exits 0 and leaves nothing in the temp folder. A bad option is one error line, exit 2."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
websockets_sync = pytest.importorskip("websockets.sync.client")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow  # the demo's engine compiles at start (~15 s)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_serve_session_then_sigterm_exits_0(tmp_path):
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", TMPDIR=str(tmp_path))
  log = open(tmp_path / "serve.log", "w+")
  proc = subprocess.Popen([sys.executable, os.path.join("scripts", "serve.py"), "--port", str(port),
                           "--batch-sizes", "1", "--max-sessions", "2"], cwd=ROOT, env=env, stdout=log,
                          stderr=subprocess.STDOUT, text=True)

  def output():
    log.seek(0)
    return log.read()[-3000:]

  health = None
  try:
    deadline = time.time() + 180
    while time.time() < deadline:
      assert proc.poll() is None, output()
      try:
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        break
      except httpx.TransportError:
        time.sleep(0.5)
    assert health is not None, "no /healthz within 180 s:\n" + output()
    assert health.status_code == 200 and health.json()["max_sessions"] == 2
    with websockets_sync.connect(f"ws://127.0.0.1:{port}/v1/stream", max_size=None) as ws:
      ws.send(json.dumps({"type": "start", "sample_rate": 16000, "format": "raw"}))  # the default portrait
      ready = json.loads(ws.recv())
      assert ready["type"] == "ready" and ready["fps"] == 25
      speech = (np.sin(np.arange(16000 * 3) * 2 * np.pi * 200 / 16000) * 8000).astype("<i2")
      ws.send(speech.tobytes())
      clip = json.loads(ws.recv(timeout=60))
      assert clip["type"] == "clip" and clip["first_frame"] == 0
      assert len(ws.recv(timeout=10)) == clip["bytes"] == clip["frames"] * ready["width"] * ready["height"] * 3
      proc.send_signal(signal.SIGTERM)  # with the session still open
      with pytest.raises(Exception):  # the server closes the socket; no more clips come
        while True:
          ws.recv(timeout=30)
    assert proc.wait(60) == 0, output()
  finally:
    if proc.poll() is None:
      proc.kill()
  log.close()
  assert not [n for n in os.listdir(tmp_path) if n.startswith("read_jax_")]


def test_serve_bad_option_is_one_error_line():
  r = subprocess.run([sys.executable, os.path.join("scripts", "serve.py"), "--batch-sizes", "1,x"], cwd=ROOT,
                     env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and "Traceback" not in r.stderr
  lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and "--batch-sizes" in lines[0], r.stderr
