"""``scripts/sample.py --live`` and the persistent compilation cache, run as a user runs them on the bundled demo:
the audio fed at real speed, one line per block, the final latency line, a video of exactly floor(25 · s)
frames; a second run (the same cache folder) writes no new compiled program, i.e. compiles nothing."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from read_jax import media

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow  # two runs of the demo model (~25 s)


def _run(cache, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", READ_JAX_CACHE=str(cache))
  r = subprocess.run([sys.executable, os.path.join("scripts", "sample.py"), *args], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  return r.stdout


def test_live_sample_and_second_run_compiles_nothing(tmp_path):
  speech, sr = soundfile.read(os.path.join(ROOT, "assets", "demo", "speech.wav"), dtype="float32")
  wav = tmp_path / "speech.wav"
  soundfile.write(wav, speech[:int(2.5 * sr)], sr)
  cache = tmp_path / "cache"
  first = _run(cache, "--live", "--audio", str(wav), "--out", str(tmp_path / "a.mp4"))
  programs = set(os.listdir(cache))
  assert programs, "the first run kept no compiled program"
  second = _run(cache, "--live", "--audio", str(wav), "--out", str(tmp_path / "b.mp4"))
  assert set(os.listdir(cache)) == programs, "the second run compiled something"
  for out, name in ((first, "a.mp4"), (second, "b.mp4")):
    # --live runs the bundled live model (assets/demo_live, the causal window): one "block" line per latent frame.
    blocks = re.findall(r"^block (\d+): frames (\d+)–(\d+), latency ([\d.]+)–([\d.]+) s$", out, re.M)
    assert [int(b[0]) for b in blocks] == list(range(len(blocks))) and len(blocks) >= 2, out
    assert int(blocks[-1][2]) + 1 == int(25 * 2.5)
    line = re.search(r"^latency: first frame ([\d.]+) s, worst ([\d.]+) s, mean ([\d.]+) s$", out, re.M)
    assert line, out
    first_frame, worst, mean = map(float, line.groups())
    assert 0 < mean <= worst and first_frame <= worst
    info = media.probe(str(tmp_path / name))
    assert info["video_frames"] == int(25 * 2.5) and info["audio"] == "aac"


def test_live_rolling_blocks_of_one_latent_frame(tmp_path):
  """--mode rolling: one block per latent frame (8 frames), the video still exactly floor(25 · s) frames; --mode clip
  gives clips; a window that cannot split the steps is one error line, exit 2."""
  speech, sr = soundfile.read(os.path.join(ROOT, "assets", "demo", "speech.wav"), dtype="float32")
  wav = tmp_path / "speech.wav"
  soundfile.write(wav, speech[:int(1.5 * sr)], sr)
  out = _run(tmp_path / "cache", "--live", "--mode", "rolling", "--noisy", "1", "--audio", str(wav),
             "--out", str(tmp_path / "r.mp4"))
  blocks = re.findall(r"^block (\d+): frames (\d+)–(\d+), latency", out, re.M)
  assert [(int(b[1]), int(b[2])) for b in blocks] == [(8 * r, min(8 * r + 7, 36)) for r in range(5)], out
  assert media.probe(str(tmp_path / "r.mp4"))["video_frames"] == 37
  out = _run(tmp_path / "cache", "--live", "--mode", "clip", "--audio", str(wav), "--out", str(tmp_path / "c.mp4"))
  assert re.findall(r"^clip (\d+): frames (\d+)–(\d+), latency", out, re.M) == [("0", "0", "36")], out
  env = dict(os.environ, JAX_PLATFORMS="cpu", READ_JAX_CACHE=str(tmp_path / "cache"))
  r = subprocess.run([sys.executable, os.path.join("scripts", "sample.py"), "--live", "--mode", "rolling", "--noisy",
                      "3", "--audio", str(wav), "--out", str(tmp_path / "bad.mp4")], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error:") and "multiple" in r.stderr, r.stderr
  assert not os.path.exists(tmp_path / "bad.mp4")
