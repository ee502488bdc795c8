"""scripts/sample.py as a user runs it: bad inputs rejected before the model loads, interrupts, outputs kept.

Every case checks the same contract: exit code 2 (130 / 143 for SIGINT / SIGTERM), one ``error:`` line
naming the file and the problem, no traceback, an existing --out byte for byte as it was, and nothing
else left beside it.
"""

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile

import _media_files as files
from read_jax import media
from read_jax.data.preprocess import iter_frames

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREVIOUS = b"previous video"


def _env():
  return dict(os.environ, JAX_PLATFORMS="cpu", READ_JAX_PROGRESS="1")  # the bar shows when generation starts


def _run(*args):
  return subprocess.run([sys.executable, os.path.join("scripts", "sample.py"), *args], cwd=ROOT, env=_env(),
                        capture_output=True, text=True, timeout=300)


def _error_line(r):
  assert "Traceback" not in r.stderr, r.stderr[-3000:]
  lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1, r.stderr[-3000:]
  return lines[0]


@pytest.mark.slow
def test_bad_inputs_fail_before_the_model_loads(tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  face = files.portrait(inputs / "face.png")
  tiny = files.portrait(inputs / "tiny.png", size=1)
  huge = files.png_header_only(inputs / "huge.png", 20000, 20000)
  text = inputs / "notes.png"
  text.write_text("not an image, just text\n")
  short = inputs / "short.wav"
  media.write_wav(str(short), files.tone(0.01), files.SR)
  nan = files.nan_wav(inputs / "nan.wav")
  mute = files.video(inputs / "mute.mp4")  # a video without an audio stream
  speech = inputs / "speech.wav"
  media.write_wav(str(speech), files.tone(1.0), files.SR)
  unwritable = files.unwritable_folder(tmp_path)

  # (name, arguments, what the error line must name, the problem it must state)
  cases = [
    ("tiny image", ["--ref", tiny], tiny, "1×1"),
    ("huge image", ["--ref", huge], huge, "megapixel limit"),
    ("text as png", ["--ref", text], text, "not a readable image"),
    ("short audio", ["--audio", short], short, "shorter than one video frame"),
    ("missing audio", ["--audio", inputs / "missing.wav"], inputs / "missing.wav", "no such file"),
    ("video without sound", ["--audio", mute], mute, "no audio stream"),
    ("NaN audio", ["--audio", nan], nan, "2 of 8000 samples are NaN"),
    ("missing checkpoint", ["--ckpt", tmp_path / "no_ckpt"], tmp_path / "no_ckpt", "no such checkpoint"),
    ("no such folder", ["--out", tmp_path / "no_dir" / "out.mp4"], tmp_path / "no_dir", "does not exist"),
  ]
  if unwritable is not None:
    cases.append(("unwritable folder", ["--out", os.path.join(unwritable, "out.mp4")], unwritable, "not writable"))

  def run(case):
    name, args, _, _ = case
    out_dir = tmp_path / name.replace(" ", "_")
    out_dir.mkdir()
    (out_dir / "out.mp4").write_bytes(PREVIOUS)
    args = [str(a) for a in args]
    if "--out" not in args:
      args += ["--out", str(out_dir / "out.mp4")]
    args = ["--ref", str(face), "--audio", str(speech)] + args  # later options win
    t0 = time.perf_counter()
    return _run(*args), time.perf_counter() - t0, out_dir

  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    results = list(pool.map(run, cases))
  for (name, _, named, problem), (r, seconds, out_dir) in zip(cases, results):
    assert r.returncode == 2, (name, r.stderr[-3000:])
    line = _error_line(r)
    assert str(named) in line and problem in line, (name, line)
    assert "generating" not in r.stderr and seconds < 60, (name, seconds)  # refused before any model work
    assert (out_dir / "out.mp4").read_bytes() == PREVIOUS, name
    assert os.listdir(out_dir) == ["out.mp4"], (name, os.listdir(out_dir))
  assert not (tmp_path / "no_dir").exists()
  if unwritable is not None:
    assert not os.path.exists(os.path.join(unwritable, "out.mp4"))


_DEFAULT_SIGINT = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                   "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


class _Run:
  """sample.py started in the background, its stderr collected as it comes."""

  def __init__(self, *args):
    # ``python -c`` sets Python's own SIGINT handler even where this test runs with SIGINT ignored (a
    # background job), so the child takes Ctrl-C as it would from a terminal.
    self.proc = subprocess.Popen([sys.executable, "-c", _DEFAULT_SIGINT, os.path.join("scripts", "sample.py"), *args],
                                 cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    self.chunks, self.generating = [], threading.Event()
    self.reader = threading.Thread(target=self._read, daemon=True)
    self.reader.start()

  def _read(self):
    fd = self.proc.stderr.fileno()
    while chunk := os.read(fd, 4096):  # whatever has arrived: the bar's first line comes without a newline
      self.chunks.append(chunk)
      if b"generating" in b"".join(self.chunks[-3:]):
        self.generating.set()

  def finish(self, timeout=120):
    try:
      self.proc.wait(timeout)
    finally:
      if self.proc.poll() is None:
        self.proc.kill()
        self.proc.wait()
    self.reader.join(10)
    return self.proc.returncode, b"".join(self.chunks).decode(errors="replace"), self.proc.stdout.read().decode()


@pytest.mark.slow
def test_sigint_and_sigterm_while_generating_keep_the_old_output(tmp_path):
  """Both signals at once (two runs side by side), once generation has started and the video writer's temp
  file exists: it is removed, the old output stays."""
  signals = {signal.SIGINT: (130, "interrupted (SIGINT)"), signal.SIGTERM: (143, "interrupted (SIGTERM)")}
  # 40 s of speech (the bundled 4 s, ten times): generation outlasts the signal even on a loaded machine.
  wave, sr = soundfile.read(os.path.join(ROOT, "assets", "demo", "speech.wav"), dtype="float32")
  speech = tmp_path / "long.wav"
  media.write_wav(str(speech), np.tile(wave, 10), sr)
  runs = {}
  for sig in signals:
    (tmp_path / sig.name).mkdir()
    out = tmp_path / sig.name / "out.mp4"
    out.write_bytes(PREVIOUS)
    runs[sig] = _Run("--audio", str(speech), "--out", str(out))
  for sig, run in runs.items():
    assert run.generating.wait(180), b"".join(run.chunks).decode()[-3000:]
    deadline = time.monotonic() + 60
    while not any(f.endswith(".video.mp4") for f in os.listdir(tmp_path / sig.name)):  # the writer's temp file
      assert time.monotonic() < deadline and run.proc.poll() is None, b"".join(run.chunks).decode()[-3000:]
      time.sleep(0.02)
    run.proc.send_signal(sig)
  for sig, run in runs.items():
    code, err, stdout = run.finish()
    assert code == signals[sig][0], (sig.name, code, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].endswith(signals[sig][1]), err[-3000:]
    assert "wrote" not in stdout
    assert (tmp_path / sig.name / "out.mp4").read_bytes() == PREVIOUS
    assert os.listdir(tmp_path / sig.name) == ["out.mp4"]


@pytest.mark.slow
def test_heun_solver_from_the_command_line(tmp_path, tiny_checkpoint):
  """--solver heun generates a whole video; the same run with Euler gives another (the solver is used)."""
  speech = tmp_path / "speech.wav"
  media.write_wav(str(speech), files.tone(1.0), files.SR)
  face = files.portrait(tmp_path / "face.png")
  videos = {}
  for solver in ("heun", "euler"):
    out = tmp_path / f"{solver}.mp4"
    r = _run("--ckpt", str(tiny_checkpoint), "--ref", str(face), "--audio", str(speech), "--out", str(out),
             "--solver", solver, "--steps", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    videos[solver] = np.stack(list(iter_frames(str(out))))
  assert videos["heun"].shape == videos["euler"].shape == (25, 64, 64, 3)
  assert np.abs(videos["heun"].astype(int) - videos["euler"]).mean() > 0.5
