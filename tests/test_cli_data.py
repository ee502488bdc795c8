"""The data and utility commands under bad input: preprocess, extract_speech, make_synthetic, encode_prompt,
aot_compile.

Every case checks one contract: exit code 2, exactly one ``error:`` line on stderr that names the file or
option and the problem, no traceback, and nothing changed on disk (the inputs and any earlier output keep
their bytes and mtimes; no temp file or new folder appears). The tables run each script's ``main`` in this
process under :func:`read_jax.cli.run` (what ``sys.exit(cli.run(main))`` does); a handful of subprocesses
check the real exit code and stderr, and the interrupts: a Ctrl-C to make_synthetic's process group, and
preprocess interrupted mid-video and between a shard and its report entry, then rerun.

The model loaders are replaced by stubs where a case is about the data, not the weights (the VAE and
Whisper are tests/test_preprocess.py's and tests/test_extract_speech.py's); the cases about a missing
checkpoint use the real loaders.
"""

import concurrent.futures
import importlib.util
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import _media_files as media_files
from read_jax import aot, cli, media
from read_jax.data import preprocess, records, speech, synthetic
from read_jax.files import read_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREVIOUS = b"an earlier run's file\n"


def _script(name):
  spec = importlib.util.spec_from_file_location(f"{name}_script", os.path.join(REPO, "scripts", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def snapshot(*roots) -> dict:
  """Every folder, and every file's bytes and mtime, under ``roots``."""
  out = {}
  for root in map(str, roots):
    for d, dirs, files in os.walk(root):
      out.update({os.path.join(d, x): "dir" for x in dirs})
      for f in files:
        p = os.path.join(d, f)
        with open(p, "rb") as fh:
          out[p] = (fh.read(), os.stat(p).st_mtime_ns)
  return out


def error_line(code, err) -> str:
  assert code == cli.EXIT_USER_ERROR, err[-3000:]
  assert "Traceback" not in err, err[-3000:]
  lines = [line for line in err.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
  return lines[0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """Two short talking videos, one without sound, a text file named .mp4, a tone and a text file named .wav."""
  root = tmp_path_factory.mktemp("inputs")
  (root / "videos").mkdir()
  (root / "audio").mkdir()
  (root / "empty").mkdir()
  for seed in (0, 1):  # 20 frames at 32²: one 17-frame clip each
    mp4, wav, _ = synthetic.write_clip(synthetic.make_clip(seed, 0.8, size=32), root / "scratch", f"talk{seed}")
    os.replace(mp4, root / "videos" / f"talk{seed}.mp4")
  media_files.video(root / "videos" / "silent.mp4", frames=20)  # no audio stream
  (root / "videos" / "corrupt.mp4").write_text("not a video, just text\n")
  media.write_wav(str(root / "audio" / "tone.wav"), media_files.tone(1.2), media_files.SR)  # 30 frames
  (root / "audio" / "notes.wav").write_text("not audio, just text\n")
  return root


@pytest.fixture
def place(tmp_path, inputs):
  """``{in}``, ``{tmp}``, ``{ro}`` filled into arguments; ``{tmp}/out`` already holds an earlier run's file."""
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "keep.bin").write_bytes(PREVIOUS)
  (tmp_path / "ckpt").mkdir()
  ro = media_files.unwritable_folder(tmp_path)

  def fill(args, **more):
    if any("{ro}" in str(a) for a in args) and ro is None:
      pytest.skip("no folder here refuses a new file")
    return [str(a).format(**{"in": inputs, "tmp": tmp_path, "ro": ro, **more}) for a in args]
  return fill


def _run_case(main, argv, named, problem, capsys, *roots):
  capsys.readouterr()
  before = snapshot(*roots)
  code = cli.run(main, argv)
  line = error_line(code, capsys.readouterr().err)
  assert named in line and problem in line, (named, problem, line)
  assert snapshot(*roots) == before


# --- preprocess ------------------------------------------------------------------------------------------


def stub_encoders(interrupt_at=None):
  """Stand-ins for the VAE and Whisper with the real shapes: every 8th frame at a quarter of the side."""
  calls = []

  def encode_video(frames):  # uint8 [T, S, S, 3] → [1 + (T − 1)/8, S/4, S/4, 3]
    calls.append(len(frames))
    if interrupt_at is not None and len(calls) == interrupt_at:
      raise KeyboardInterrupt
    return np.asarray(frames[::8, ::4, ::4], np.float32) / 255

  def featurize(wave, num_frames):  # → [F, 10, 4]
    return wave[: num_frames * 640].reshape(num_frames, 640)[:, :40].reshape(num_frames, 10, 4)

  return encode_video, featurize, calls


PREPROCESS_DEFAULTS = ["--ckpt", "{tmp}/ckpt", "--out", "{tmp}/out", "--clip_frames", "17", "--resolution", "16",
                       "--no_detector"]
# (id, arguments after the defaults (later ones win), what the line names, the problem it states)
PREPROCESS_CASES = [
  ("missing_folder", ["{tmp}/no_videos"], "{tmp}/no_videos", "no such file or directory"),
  ("glob_matches_nothing", ["{in}/videos/*.mov"], "{in}/videos/*.mov", "no files match"),
  ("folder_without_videos", ["{in}/empty"], "{in}/empty", "no video files (.mp4"),
  ("out_is_a_file", ["{in}/videos", "--out", "{tmp}/out/keep.bin"], "--out {tmp}/out/keep.bin",
   "exists and is not a folder"),
  ("out_unwritable", ["{in}/videos", "--out", "{ro}/data"], "{ro}", "cannot write into"),
  ("clip_frames_not_1_plus_8k", ["{in}/videos", "--clip_frames", "16"], "--clip_frames 16", "must be 1 + 8k"),
  ("zero_stride", ["{in}/videos", "--stride", "0"], "--stride 0", "must be >= 1"),
  ("negative_resolution", ["{in}/videos", "--resolution", "-64"], "--resolution -64", "must be >= 1"),
  ("zero_detect_every", ["{in}/videos", "--detect_every", "0"], "--detect_every 0", "must be >= 1"),
  ("val_fraction_1", ["{in}/videos", "--val_fraction", "1"], "--val_fraction 1.0", "must be in [0, 1)"),
  ("no_checkpoint", ["{in}/videos", "--ckpt", ""], "--ckpt", "or both --vae and --speech-encoder"),
  ("missing_checkpoint", ["{in}/videos", "--ckpt", "{tmp}/no_ckpt"], "{tmp}/no_ckpt/vae", "no such file"),
  ("corrupt_report", ["{in}/videos", "--out", "{tmp}/bad_report"], "{tmp}/bad_report/report.json",
   "not valid JSON"),
  ("report_of_other_settings", ["{in}/videos", "--out", "{tmp}/other_report"], "{tmp}/other_report/report.json",
   "written with"),
  ("only_a_corrupt_video", ["{in}/videos/corrupt.mp4", "--out", "{tmp}/new"], "{in}/videos/corrupt.mp4",
   "corrupt or not a media file"),
  ("only_a_video_without_sound", ["{in}/videos/silent.mp4", "--out", "{tmp}/new"], "{in}/videos/silent.mp4",
   "no audio track (no usable video among the 1 given; nothing written)"),
]


@pytest.fixture(scope="module")
def preprocess_script():
  return _script("preprocess")


@pytest.mark.parametrize("args, named, problem", [c[1:] for c in PREPROCESS_CASES],
                         ids=[c[0] for c in PREPROCESS_CASES])
def test_preprocess_bad_input(preprocess_script, place, tmp_path, inputs, capsys, monkeypatch, args, named, problem):
  (tmp_path / "bad_report").mkdir()
  (tmp_path / "bad_report" / "report.json").write_text("{not json")
  (tmp_path / "other_report").mkdir()
  (tmp_path / "other_report" / "report.json").write_text(
      '{"settings": {"clip_frames": 25, "stride": 25, "resolution": 16, "val_fraction": 0.05}, '
      '"processed": {}, "skipped": {}}')
  if "no_ckpt" not in named:
    encode_video, featurize, _ = stub_encoders()
    monkeypatch.setattr(preprocess, "load_encoders", lambda vae, whisper, speech_window="whole": (encode_video, featurize))
  _run_case(preprocess_script.main, place(PREPROCESS_DEFAULTS + args), *place([named, problem]), capsys,
            tmp_path, inputs)
  assert not (tmp_path / "new").exists()


def test_preprocess_skips_a_video_without_sound(preprocess_script, place, tmp_path, capsys, monkeypatch):
  """With usable videos beside them, the silent and the corrupt video are skipped and reported, not errors."""
  encode_video, featurize, _ = stub_encoders()
  monkeypatch.setattr(preprocess, "load_encoders", lambda vae, whisper, speech_window="whole": (encode_video, featurize))
  code = cli.run(preprocess_script.main, place(["{in}/videos"] + PREPROCESS_DEFAULTS))
  out = capsys.readouterr()
  assert code == 0, out.err
  assert "2 videos (2 clips)" in out.out
  corrupt, silent = sorted(out.err.splitlines())
  assert corrupt.startswith(place(["  skipped {in}/videos/corrupt.mp4: corrupt or not a media file ("])[0]), corrupt
  assert silent == place(["  skipped {in}/videos/silent.mp4: no audio track"])[0]
  report = preprocess.open_report(str(tmp_path / "out"), preprocess.check_settings(
      clip_frames=17, stride=17, resolution=16, val_fraction=0.05))
  assert report["skipped"][place(["{in}/videos/silent.mp4"])[0]] == "no audio track"


def _state(out_dir):
  names = sorted(os.listdir(out_dir))
  shards = {n: [ex["latents"].tobytes() for ex in records.read_source([os.path.join(out_dir, n)])]
            for n in names if n.endswith(".array_record")}
  return names, shards


def test_preprocess_interrupted_resumes_cleanly(preprocess_script, place, tmp_path, capsys, monkeypatch):
  """Ctrl-C inside the second video, then between the second video's shard landing and its report entry:
  each time one line and exit 130, no temp folder, no shard the report does not vouch for that a rerun
  would keep; the rerun redoes only what is missing and ends exactly as one uninterrupted run."""
  videos = place(["{in}/videos/talk0.mp4", "{in}/videos/talk1.mp4"])
  argv = videos + place(PREPROCESS_DEFAULTS)

  def run(encoders, out):
    monkeypatch.setattr(preprocess, "load_encoders", lambda vae, whisper, speech_window="whole": encoders[:2])
    code = cli.run(preprocess_script.main, argv + ["--out", out])
    return code, capsys.readouterr().err

  clean = str(tmp_path / "clean")
  assert run(stub_encoders(), clean)[0] == 0
  out = str(tmp_path / "resumed")
  encoders = stub_encoders(interrupt_at=3)  # two calls a video: clip, then reference frame
  assert run(encoders, out) == (cli.EXIT_SIGINT, "interrupted (SIGINT)\n")
  names, _ = _state(out)
  assert len(names) == 2 and "report.json" in names  # the first video's shard and its entry, nothing else
  first = preprocess.open_report(out, preprocess.check_settings(clip_frames=17, stride=17, resolution=16,
                                                                val_fraction=0.05))
  assert list(first["processed"]) == videos[:1]

  real_write_json = preprocess.write_json
  def write_json_then_interrupt(path, obj):  # the shard has landed; its report entry never does
    monkeypatch.setattr(preprocess, "write_json", real_write_json)
    raise KeyboardInterrupt
  monkeypatch.setattr(preprocess, "write_json", write_json_then_interrupt)
  encoders = stub_encoders()
  assert run(encoders, out) == (cli.EXIT_SIGINT, "interrupted (SIGINT)\n")
  assert encoders[2] == [17, 1]  # only the second video was redone
  assert len(_state(out)[0]) == 3  # its shard is there, unlisted: the rerun must overwrite it, not add one

  encoders = stub_encoders()
  code, err = run(encoders, out)
  assert code == 0 and err == "", err
  assert encoders[2] == [17, 1]
  assert _state(out) == _state(clean)
  assert read_json(os.path.join(out, "report.json")) == read_json(os.path.join(clean, "report.json"))


# --- extract_speech --------------------------------------------------------------------------------------


SPEECH_DEFAULTS = ["--whisper", "{tmp}/ckpt", "--out", "{tmp}/out", "--min_frames", "17"]
SPEECH_CASES = [
  ("missing_file", ["{in}/audio/nope.wav"], "{in}/audio/nope.wav", "no such file or directory"),
  ("glob_matches_nothing", ["{in}/audio/*.opus"], "{in}/audio/*.opus", "no files match"),
  ("folder_without_audio", ["{in}/empty"], "{in}/empty", "no audio files (.wav"),
  ("out_is_a_file", ["{in}/audio", "--out", "{tmp}/out/keep.bin"], "--out {tmp}/out/keep.bin",
   "exists and is not a folder"),
  ("out_unwritable", ["{in}/audio", "--out", "{ro}/speech"], "{ro}", "cannot write into"),
  ("zero_min_frames", ["{in}/audio", "--min_frames", "0"], "--min_frames 0", "must be >= 1"),
  ("zero_examples_per_shard", ["{in}/audio", "--examples_per_shard", "0"], "--examples_per_shard 0", "must be >= 1"),
  ("negative_val_fraction", ["{in}/audio", "--val_fraction", "-0.5"], "--val_fraction -0.5", "must be in [0, 1)"),
  ("missing_whisper", ["{in}/audio", "--whisper", "{tmp}/no_whisper"], "{tmp}/no_whisper",
   "no such speech encoder directory"),
  ("only_a_text_file_named_wav", ["{in}/audio/notes.wav", "--out", "{tmp}/new"], "{in}/audio/notes.wav",
   "cannot read audio"),
  ("shards_but_no_report", ["{in}/audio", "--out", "{tmp}/old_layout"], "{tmp}/old_layout",
   "no report.json to resume from"),
]


def _stub_whisper(monkeypatch):
  monkeypatch.setattr(speech, "load_speech_encoder", lambda path: None)
  monkeypatch.setattr(speech, "speech_features", lambda wave, encoder, policy=None: np.zeros(
      (len(wave) * 25 // 16000, 10, 4), np.float32) + wave[:1])


@pytest.fixture(scope="module")
def speech_script():
  return _script("extract_speech")


@pytest.mark.parametrize("args, named, problem", [c[1:] for c in SPEECH_CASES], ids=[c[0] for c in SPEECH_CASES])
def test_extract_speech_bad_input(speech_script, place, tmp_path, inputs, capsys, monkeypatch, args, named, problem):
  (tmp_path / "old_layout").mkdir()
  (tmp_path / "old_layout" / "train-00000.array_record").write_bytes(PREVIOUS)
  if "no_whisper" not in named:
    _stub_whisper(monkeypatch)
  _run_case(speech_script.main, place(SPEECH_DEFAULTS + args), *place([named, problem]), capsys, tmp_path, inputs)
  assert not (tmp_path / "new").exists()


def test_extract_speech_skips_a_corrupt_file(speech_script, place, tmp_path, capsys, monkeypatch):
  _stub_whisper(monkeypatch)
  code = cli.run(speech_script.main, place(["{in}/audio"] + SPEECH_DEFAULTS))
  out = capsys.readouterr()
  assert code == 0, out.err
  assert "1 clips written" in out.out
  assert out.err.startswith(place(["  skipped {in}/audio/notes.wav: {in}/audio/notes.wav: cannot read audio"])[0])
  assert len(out.err.splitlines()) == 1


# --- make_synthetic --------------------------------------------------------------------------------------


SYNTHETIC_DEFAULTS = ["--out", "{tmp}/out", "--num", "2", "--seconds", "0.2", "--size", "16"]
SYNTHETIC_CASES = [
  ("zero_clips", ["--num", "0"], "--num 0", "must be >= 1"),
  ("negative_clips", ["--num", "-3"], "--num -3", "must be >= 1"),
  ("zero_seconds", ["--seconds", "0"], "--seconds 0.0", "at least one frame"),
  ("nan_seconds", ["--seconds", "nan"], "--seconds nan", "at least one frame"),
  ("odd_size", ["--size", "31"], "--size 31", "must be even"),
  ("tiny_size", ["--size", "4"], "--size 4", "must be an integer >= 8"),
  ("zero_workers", ["--workers", "0"], "--workers 0", "must be >= 1"),
  ("negative_seed", ["--seed", "-1"], "--seed -1", "must be >= 0"),
  ("past_the_split", ["--seed", "999999", "--num", "5"], "--seed 999999 --num 5", "leave its 1,000,000 seeds"),
  ("out_is_a_file", ["--out", "{tmp}/out/keep.bin"], "--out {tmp}/out/keep.bin", "exists and is not a folder"),
  ("out_unwritable", ["--out", "{ro}/synth"], "{ro}", "cannot write into"),
]


@pytest.mark.parametrize("args, named, problem", [c[1:] for c in SYNTHETIC_CASES], ids=[c[0] for c in SYNTHETIC_CASES])
def test_make_synthetic_bad_input(place, tmp_path, capsys, args, named, problem):
  _run_case(_script("make_synthetic").main, place(SYNTHETIC_DEFAULTS + args), *place([named, problem]), capsys,
            tmp_path)


_DEFAULT_SIGINT = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                   "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.mark.slow
def test_make_synthetic_ctrl_c_leaves_whole_clips(tmp_path):
  """Ctrl-C (SIGINT to the whole process group, workers included, as a terminal sends it): one line,
  exit 130, every clip on disk complete (its three files, no temp), and a rerun adds only the rest."""
  out = tmp_path / "synth"
  args = [os.path.join("scripts", "make_synthetic.py"), "--out", str(out), "--num", "60", "--seconds", "2",
          "--size", "64", "--workers", "2"]
  # ``python -c`` installs Python's SIGINT handler even when this test runs where SIGINT is ignored.
  proc = subprocess.Popen([sys.executable, "-c", _DEFAULT_SIGINT, *args], cwd=REPO, stderr=subprocess.PIPE,
                          text=True, start_new_session=True)
  try:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not any(n.endswith(".json") for n in
                                                                      (os.listdir(out) if out.exists() else ())):
      time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == cli.EXIT_SIGINT and err == "interrupted (SIGINT)\n", err[-3000:]
  names = sorted(os.listdir(out))
  stems = sorted({n.split(".")[0] for n in names})
  assert 0 < len(stems) < 60 and names == sorted(f"{s}{ext}" for s in stems for ext in (".json", ".mp4", ".wav"))
  mtimes = {n: os.stat(out / n).st_mtime_ns for n in names}
  subprocess.run([sys.executable, *args], cwd=REPO, check=True, capture_output=True, timeout=300)
  assert len(os.listdir(out)) == 180
  assert {n: os.stat(out / n).st_mtime_ns for n in names} == mtimes


# --- encode_prompt ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t5_dirs(tmp_path_factory):
  """A tiny random T5 encoder (config.json + model.safetensors, no tokenizer) and broken copies of it."""
  transformers = pytest.importorskip("transformers")
  pytest.importorskip("torch")
  root = tmp_path_factory.mktemp("t5")
  config = transformers.T5Config(vocab_size=40, d_model=12, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
  transformers.T5EncoderModel(config).save_pretrained(str(root / "t5"), safe_serialization=True)
  (root / "config_only").mkdir()
  (root / "config_only" / "config.json").write_bytes((root / "t5" / "config.json").read_bytes())
  (root / "truncated").mkdir()
  (root / "truncated" / "config.json").write_bytes((root / "t5" / "config.json").read_bytes())
  weights = (root / "t5" / "model.safetensors").read_bytes()
  (root / "truncated" / "model.safetensors").write_bytes(weights[: len(weights) // 2])
  (root / "spiece_only").mkdir()
  (root / "spiece_only" / "spiece.model").write_bytes(b"\0" * 16)
  return root


PROMPT_DEFAULTS = ["--t5", "{t5}/t5", "--out", "{tmp}/out/keep.bin", "--input-ids", "3,4,1", "--max-length", "8"]
PROMPT_CASES = [
  ("missing_t5", ["--t5", "{tmp}/no_t5"], "--t5 {tmp}/no_t5", "no such directory (nothing is downloaded"),
  ("no_config", ["--t5", "{in}/empty"], "{in}/empty", "no config.json"),
  ("no_weights", ["--t5", "{t5}/config_only"], "{t5}/config_only", "no model*.safetensors file"),
  ("truncated_weights", ["--t5", "{t5}/truncated"], "{t5}/truncated/model.safetensors",
   "not a readable safetensors file"),
  ("no_tokenizer", ["--prompt", "hello", "--input-ids", ""], "{t5}/t5", "no tokenizer.json or spiece.model"),
  ("missing_tokenizer", ["--input-ids", "", "--tokenizer", "{tmp}/no_tok"], "--tokenizer {tmp}/no_tok",
   "no such directory"),
  ("zero_max_length", ["--max-length", "0"], "--max-length 0", "must be >= 1"),
  ("ids_not_integers", ["--input-ids", "3,x"], "--input-ids '3,x'", "comma-separated integers"),
  ("id_outside_vocabulary", ["--input-ids", "3,99"], "--input-ids", "id 99 is outside the T5 vocabulary (40 tokens)"),
  ("out_is_a_folder", ["--out", "{tmp}/out"], "{tmp}/out", "is a directory"),
  ("out_folder_missing", ["--out", "{tmp}/no_dir/p.safetensors"], "{tmp}/no_dir", "does not exist"),
]


@pytest.mark.parametrize("args, named, problem", [c[1:] for c in PROMPT_CASES], ids=[c[0] for c in PROMPT_CASES])
def test_encode_prompt_bad_input(t5_dirs, place, tmp_path, inputs, capsys, args, named, problem):
  _run_case(_script("encode_prompt").main, place(PROMPT_DEFAULTS + args, t5=t5_dirs),
            *place([named, problem], t5=t5_dirs), capsys, tmp_path, inputs, t5_dirs)


@pytest.mark.parametrize("missing, problem", [("torch", "torch: not installed; the T5 encoder runs in PyTorch"),
                                              ("sentencepiece", "has only spiece.model, which needs sentencepiece")])
def test_encode_prompt_names_a_missing_package(t5_dirs, place, tmp_path, capsys, monkeypatch, missing, problem):
  monkeypatch.setitem(sys.modules, missing, None)  # what importlib.util.find_spec reports for a package not there
  args = ["--tokenizer", f"{t5_dirs}/spiece_only", "--input-ids", ""] if missing == "sentencepiece" else []
  _run_case(_script("encode_prompt").main, place(PROMPT_DEFAULTS, t5=t5_dirs) + args, missing, problem, capsys,
            tmp_path, t5_dirs)


# --- aot_compile -----------------------------------------------------------------------------------------


AOT_CASES = [
  ("unknown_config", ["--config", "nosuch.py"], "--config nosuch.py", "no such config file"),
  ("unknown_key", ["--config.model.no_such_key=1"], "--config.model.no_such_key=1", "no key 'no_such_key'"),
  ("unknown_chip", ["--topology", "v9x:2x2"], "--topology 'v9x:2x2'", "chip 'v9x' is not one of"),
  ("not_a_topology", ["--topology", "tpu"], "--topology 'tpu'", "expected <chip>:<AxB[xC]>"),
  ("bad_mesh", ["--mesh", "fsdp=x"], "--mesh 'fsdp=x'", "items look like data=4,fsdp=16,tensor=4"),
  ("unknown_program", ["--what", "train,serve"], "--what 'train,serve'", "a comma list of train, sample"),
  ("negative_batch", ["--per-device-batch", "-1"], "--per-device-batch -1", "must be >= 0"),
  ("json_folder_missing", ["--json", "{tmp}/no_dir/r.json"], "{tmp}/no_dir", "does not exist"),
  ("no_libtpu", [], "libtpu", "pip install"),
  ("mesh_larger_than_the_slice", ["--mesh", "fsdp=8"], "config.mesh", "needs 8 devices, 4 are available"),
]


@pytest.mark.parametrize("args, named, problem", [c[1:] for c in AOT_CASES], ids=[c[0] for c in AOT_CASES])
def test_aot_compile_bad_input(place, tmp_path, capsys, monkeypatch, args, named, problem):
  if named == "libtpu":
    monkeypatch.setattr(aot, "libtpu_available", lambda: False)
  elif named == "config.mesh" and not aot.libtpu_available():
    pytest.skip("libtpu is not installed: no TPU topology to fit a mesh to")
  argv = place(["--config", "a2v_dit.py:tiny", "--topology", "v5e:2x2", "--what", "train"] + args)
  _run_case(_script("aot_compile").main, argv, *place([named, problem]), capsys, tmp_path)


# --- the real processes ----------------------------------------------------------------------------------


SUBPROCESS_CASES = [
  ("preprocess", ["{tmp}/no_videos", "--ckpt", "{tmp}/ckpt", "--out", "{tmp}/out"], "{tmp}/no_videos: no such file"),
  ("extract_speech", ["{in}/audio/*.opus", "--whisper", "{tmp}/ckpt", "--out", "{tmp}/out"],
   "{in}/audio/*.opus: no files match"),
  ("make_synthetic", ["--out", "{tmp}/out", "--num", "0"], "--num 0: must be >= 1"),
  ("encode_prompt", ["--t5", "{tmp}/no_t5", "--out", "{tmp}/out/p.safetensors"], "--t5 {tmp}/no_t5: no such directory"),
  ("aot_compile", ["--config", "a2v_dit.py:tiny", "--topology", "v9x:2x2"], "--topology 'v9x:2x2': chip 'v9x'"),
]


@pytest.mark.slow
def test_scripts_exit_2_with_one_error_line(place, tmp_path, inputs):
  """The real processes: exit code 2, stderr exactly one ``error:`` line (no traceback, no warning), nothing
  written (the five run at once: each spends its seconds importing jax)."""
  before = snapshot(tmp_path, inputs)
  env = dict(os.environ, JAX_PLATFORMS="cpu")

  def run(case):
    name, args, _ = case
    return subprocess.run([sys.executable, os.path.join("scripts", f"{name}.py"), *place(args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)

  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    results = list(pool.map(run, SUBPROCESS_CASES))
  for (name, _, says), r in zip(SUBPROCESS_CASES, results):
    assert r.returncode == 2 and r.stdout == "", (name, r.stderr[-3000:])
    assert r.stderr.startswith(f"error: {place([says])[0]}") and r.stderr.count("\n") == 1, (name, r.stderr[-3000:])
  assert snapshot(tmp_path, inputs) == before
