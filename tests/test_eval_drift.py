"""read_jax/eval/drift.py and scripts/eval_drift.py: the demo's drift curve (Table 3) and steps curve (Fig. 3).

The windows and the per-window measures are checked against the talking-head measures computed directly on each
slice, first on synthetic clips (a fake pipeline whose "generated" video is another clip's frames, so the video is
known), then end to end on the bundled demo (a few seconds of speech, 1–2 steps): the reports are written, with
the mechanics checked, never a metric's value."""

import importlib.util
import json
import os
import types

import numpy as np
import pytest

from read_jax import cli
from read_jax.ans.solvers import Sampler
from read_jax.data import synthetic
from read_jax.eval import drift, talking

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "assets", "demo")
SIZE = 64


def _script(argv) -> int:
  """scripts/eval_drift.py in this process, under the commands' error convention."""
  spec = importlib.util.spec_from_file_location("_test_eval_drift_script", os.path.join(ROOT, "scripts",
                                                                                         "eval_drift.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return cli.run(module.main, [str(a) for a in argv])


@pytest.mark.parametrize("num_frames, window_s", [(15000, 5.0), (250, 5.0), (260, 5.0), (190, 5.0), (100, 5.0),
                                                  (77, 1.0), (3, 0.12)])
def test_windows_cover_the_video_exactly(num_frames, window_s):
  spans = drift.windows(num_frames, window_s)
  step = int(round(window_s * 25))
  assert spans[0][0] == 0 and spans[-1][1] == num_frames
  assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, no gap, no overlap
  assert all(hi - lo == step for lo, hi in spans[:-1])  # every window but the last is exactly window_s
  last = spans[-1][1] - spans[-1][0]
  assert step / 2 <= last < 1.5 * step or len(spans) == 1
  if num_frames % step == 0:
    assert len(spans) == num_frames // step


def test_windows_refuse_too_short_windows():
  with pytest.raises(ValueError):
    drift.windows(100, 0.04)


class _FakePipeline:
  """Stands in for ReadPipeline: ``stream`` yields, in pieces of a clip's size, the frames of the synthetic clip
  of seed + 1 (another identity's video: a known video whose measures are not trivial)."""

  def __init__(self):
    self.config = types.SimpleNamespace(resolution=SIZE, fps=25, clip_frames=8, mode="clip", steps=8)
    self.timings = types.SimpleNamespace(speech_encoder=0.0, speech_ae=0.0, denoise=0.0, vae_decode=0.0)
    self.videos = {}

  def sampler(self, *, steps=None, cfg=None, alpha=None, beta=None, solver=None):
    return Sampler.create(steps=steps or 8, cfg=cfg or "none", alpha=alpha, beta=beta, solver=solver or "euler")

  def stream(self, image, audio, *, seed=0, progress=None, **sample):
    num = len(audio) // synthetic.SAMPLES_PER_FRAME
    key = int(np.asarray(image, np.int64).sum())  # the portrait tells the identity
    self.videos[key] = video = synthetic.make_clip(7 + len(self.videos), num / 25, SIZE).frames
    total = -(-num // 56)
    for j in range(total):
      if progress is not None:
        progress(j + 1, total)
      yield video[56 * j:56 * (j + 1)]


def test_per_window_measures_equal_the_measures_on_each_slice():
  seconds = 11.0  # two 5 s windows and a 1 s remainder that joins the second
  pipe = _FakePipeline()
  report = drift.drift(pipe, num=2, seconds=seconds, first=100, window_s=5.0, progress=False)
  spans = drift.windows(int(seconds * 25), 5.0)
  assert [(round(a * 25), round(b * 25)) for a, b in zip(report["mean"]["start_s"], report["mean"]["end_s"])] \
      == spans == [(0, 125), (125, 275)]
  bounds = talking.clip_boundaries(275, 8)
  for idn, seed in zip(report["identities"], synthetic.split_seeds("test", 2, 100)):
    clip = synthetic.make_clip(seed, seconds, SIZE)
    portrait = synthetic.render_face(clip.identity, mouth_open=0.0, size=SIZE)
    video = pipe.videos[int(portrait.astype(np.int64).sum())]
    w = idn["windows"]
    for i, (lo, hi) in enumerate(spans):
      v, t, m = video[lo:hi], clip.frames[lo:hi], clip.mouth[lo:hi]
      inside = [b - lo for b in bounds if lo < b < hi]
      assert inside and len(inside) == w["boundaries"][i]
      np.testing.assert_allclose(w["lip_sync"][i], talking.lip_sync_correlation(v, m)[0], rtol=1e-12)
      np.testing.assert_allclose(w["lip_sync_ground_truth"][i], talking.lip_sync_correlation(t, m)[0], rtol=1e-12)
      np.testing.assert_allclose(w["colour_error"][i], talking.face_colour_error(v, portrait), rtol=1e-12)
      np.testing.assert_allclose(w["boundary_ratio"][i], talking.boundary_ratio(v, inside), rtol=1e-12)
      np.testing.assert_allclose(w["flicker"][i], talking.flicker(v) / talking.flicker(t), rtol=1e-12)
      silence = talking.silence_scores(v, t, m)
      if np.isnan(silence["mouth_silence"]):
        assert w["mouth_silence"][i] is None
      else:
        np.testing.assert_allclose(w["mouth_silence"][i], silence["mouth_silence"], rtol=1e-12)
    assert w["lip_sync"][0] != w["lip_sync"][1]  # the windows are different slices
  for key in ("lip_sync", "colour_error", "boundary_ratio"):
    np.testing.assert_allclose(report["mean"][key], np.mean([idn["windows"][key] for idn in report["identities"]], 0))


def test_a_window_without_a_boundary_or_pause_is_null():
  clip = synthetic.make_clip(next(iter(synthetic.split_seeds("test", 1, 100))), 2.0, SIZE)
  portrait = synthetic.render_face(clip.identity, mouth_open=0.0, size=SIZE)
  mouth = np.full(len(clip.mouth), 0.5, np.float32)  # no pause anywhere
  row = drift.window_scores(clip.frames, clip.frames, mouth, portrait, [1, 49], 2, 48)
  assert np.isnan(row["boundary_ratio"]) and row["boundaries"] == 0
  assert np.isnan(row["mouth_silence"])


def test_trend_is_first_and_last_span_means_and_the_slope():
  starts = np.arange(0, 600, 5.0)
  curve = {"start_s": list(starts), "end_s": list(starts + 5)}
  curve.update({k: list(0.5 + 0.01 * (starts + 5) / 60) for k in drift.DRIFT_LABELS})  # +0.01 per minute
  curve["mouth_silence"] = [None] * 12 + [0.03] * 108  # no pause in the first minute
  rows = drift.trend(curve)
  np.testing.assert_allclose(rows["lip_sync"]["slope_per_min"], 0.01)
  np.testing.assert_allclose(rows["lip_sync"]["first"], np.mean(0.5 + 0.01 * (starts[:12] + 5) / 60))
  np.testing.assert_allclose(rows["lip_sync"]["last"], np.mean(0.5 + 0.01 * (starts[-12:] + 5) / 60))
  assert rows["mouth_silence"]["first"] is None and rows["mouth_silence"]["last"] == pytest.approx(0.03)


@pytest.mark.parametrize("argv, says", [
    (["--num", "0"], "--num"),
    (["--steps-curve", "--num", "1"], "--num"),
    (["--seconds", "-1"], "--seconds"),
    (["--seconds", "4", "--window", "5"], "--window"),
    (["--steps", "0,x"], "--steps"),
    (["--steps", "2,4"], "--steps"),
    (["--ckpt", "/nonexistent/ckpt"], "/nonexistent/ckpt"),
    (["--out", "/nonexistent/dir/r.json"], "/nonexistent/dir"),
    (["--out", "report.txt"], ".json"),
])
def test_bad_input_is_one_error_line(argv, says, capsys):
  assert _script(argv) == cli.EXIT_USER_ERROR
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


@pytest.mark.slow
def test_tiny_runs_on_the_demo_write_json_md_png(tmp_path, capsys):
  out = tmp_path / "drift.json"
  assert _script(["--ckpt", DEMO, "--num", "1", "--seconds", "4.4", "--window", "2", "--steps", "2",
                  "--out", out]) == 0
  report = json.loads(out.read_text())
  assert report["settings"]["steps"] == 2 and report["settings"]["test_seeds"] == [2000100]
  w = report["identities"][0]["windows"]
  assert w["start_s"] == [0.0, 2.0] and w["end_s"] == [2.0, 4.4]  # 0.4 s joins the last window
  assert all(isinstance(v, float) for v in w["lip_sync"] + w["colour_error"])
  table = (tmp_path / "drift.md").read_text()
  assert "| 0:00–0:02 |" in table and "| 0:02–0:04.4 |" in table and "| first 4.4 s, mean |" in table
  assert (tmp_path / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

  out = tmp_path / "steps.json"
  assert _script(["--ckpt", DEMO, "--steps-curve", "--steps", "2,1", "--num", "2", "--seconds", "2.4",
                  "--out", out]) == 0
  report = json.loads(out.read_text())
  assert report["steps"] == [1, 2] and set(report["runs"]) == {"1", "2"}
  for run in report["runs"].values():
    g = run["generation"]
    assert g["videos"] == 4 and g["clips"] == 4 * 2  # 2 clips x (own + other speech), 60 frames = 2 ANS clips
    assert g["wall_s_per_clip"] > 0 and np.isclose(g["wall_s_per_video"] * 4, g["wall_s"])
    assert set(run["metrics"]) <= set(drift.STEPS_METRICS) and "lip_sync" in run["metrics"]
  assert report["runs"]["1"]["metrics"] != report["runs"]["2"]["metrics"]
  assert "| 2 |" in (tmp_path / "steps.md").read_text()
  assert (tmp_path / "steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
