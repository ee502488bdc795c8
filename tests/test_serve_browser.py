"""The page at / in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium): the server
wants an API key, so the page first asks for it (the test types it in); then a wav fed as the microphone
(--use-file-for-fake-audio-capture), the avatar must come back — the page's frame counter grows, and in fMP4
mode the video element's playback time advances (MediaSource played the fragments), in raw mode the canvas is
drawn. The page's own Content-Security-Policy is in force. A real uvicorn on 127.0.0.1 and a free port, in a
thread, stopped at the end."""

import os
import shutil
import socket
import threading
import time
import wave

import jax
import numpy as np
import pytest

pytestmark = pytest.mark.slow

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
  pytest.skip("Debian chromium / chromedriver are not installed", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
uvicorn = pytest.importorskip("uvicorn")
engine_lib = pytest.importorskip("read_jax.serve.engine")

from read_jax.serve import app as app_lib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "browser-test-key-0123456789"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_pipeline):
  pipe = tiny_pipeline
  engine = engine_lib.Engine(pipe, batch_sizes=(1,), max_sessions=2, devices=jax.local_devices()[:1])
  engine.start()
  with open(os.path.join(ROOT, "assets", "demo", "reference.png"), "rb") as f:
    app = app_lib.create_app(engine, pipe, app_lib.Limits(idle_timeout_seconds=30), default_portrait=f.read(),
                             security=app_lib.Security(api_key=KEY))
  port = _free_port()
  srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
  srv.install_signal_handlers = False
  thread = threading.Thread(target=srv.run, daemon=True)
  thread.start()
  deadline = time.time() + 60
  while not srv.started and time.time() < deadline:
    time.sleep(0.1)
  assert srv.started, "uvicorn did not start"
  yield f"http://127.0.0.1:{port}/"
  srv.should_exit = True
  thread.join(10)
  engine.stop(cancel=True)


def _speech_wav(path, seconds=6.0):
  sr = 16000
  t = np.arange(int(seconds * sr)) / sr
  x = 0.4 * np.sin(2 * np.pi * 200 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
  with wave.open(str(path), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(sr)
    w.writeframes((x * 32767).astype("<i2").tobytes())


def _browser(wav):
  opts = webdriver.ChromeOptions()
  opts.binary_location = CHROMIUM
  for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream",
               "--use-fake-ui-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
               "--autoplay-policy=no-user-gesture-required", "--window-size=900,700"):
    opts.add_argument(flag)
  from selenium.webdriver.chrome.service import Service
  return webdriver.Chrome(service=Service(DRIVER), options=opts)


@pytest.mark.parametrize("fmt", ["fmp4", "raw"])
def test_page_talks_back(server, tmp_path, fmt):
  wav = tmp_path / "speech.wav"
  _speech_wav(wav)
  driver = _browser(wav)
  try:
    driver.set_script_timeout(30)
    driver.get(server)
    deadline = time.time() + 30
    while driver.execute_script("return window.readStats.needsKey") is not True and time.time() < deadline:
      time.sleep(0.1)
    assert driver.find_element("id", "key-row").is_displayed(), "the page did not ask for the key"
    driver.find_element("id", "api-key").send_keys(KEY)
    driver.find_element("id", "key-use").click()
    while driver.execute_script("return window.readStats.needsKey") is not False and time.time() < deadline:
      time.sleep(0.1)
    assert not driver.find_element("id", "key-row").is_displayed()
    if fmt == "fmp4" and not driver.execute_script(
        "return window.MediaSource && MediaSource.isTypeSupported('video/mp4; codecs=\"avc1.42E01E, mp4a.40.2\"')"):
      pytest.skip("this chromium build's MediaSource has no H.264/AAC")
    driver.execute_script(f"document.getElementById('format').value = '{fmt}';")
    driver.find_element("id", "start").click()
    deadline = time.time() + 90
    frames = 0
    while time.time() < deadline:
      frames = driver.execute_script("return window.readStats.frames")
      if frames >= 40:
        break
      error = driver.execute_script("return window.readStats.error || null")
      assert error is None, error
      time.sleep(0.5)
    assert frames >= 40, f"only {frames} frames reached the page"
    assert int(driver.find_element("id", "frames").text) > 0  # the counter the user sees
    if fmt == "fmp4":
      t0 = driver.execute_script("return document.getElementById('video').currentTime")
      time.sleep(2.0)
      t1 = driver.execute_script("return document.getElementById('video').currentTime")
      assert t1 > t0, f"the video did not play ({t0} → {t1})"
      driver.save_screenshot(str(tmp_path / "page.png"))  # (docs/serving_page.png is the demo's, from serve.py)
    else:
      drawn = driver.execute_script(
        "const c = document.getElementById('canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, "
        "c.height).data; let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i+1] + d[i+2]; return s;")
      assert drawn > 0, "the canvas was never drawn"
  finally:
    driver.quit()
