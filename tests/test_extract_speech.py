"""scripts/extract_speech.py's library side: audio → features → ArrayRecord shards; bad files listed."""

import os

import jax
import numpy as np
import pytest
import soundfile

from read_jax.data import records, speech


def _wav(path, seconds, sr=16000, seed=0):
  t = np.arange(int(seconds * sr)) / sr
  rng = np.random.default_rng(seed)
  wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
  soundfile.write(path, wave.astype(np.float32), sr)
  return path


@pytest.fixture
def audio_dir(tmp_path):
  d = tmp_path / "audio"
  (d / "sub").mkdir(parents=True)
  for i in range(5):
    _wav(str(d / "sub" / f"clip{i}.wav"), 1.6, seed=i)  # 40 video frames
  _wav(str(d / "short.wav"), 0.2)  # 5 frames
  (d / "broken.wav").write_bytes(b"RIFF not really a wave file")
  (d / "notes.txt").write_text("not audio, ignored by extension")
  return d


def _stub_features(wave):
  # [F, 2, 3] from the waveform: frame energy and two fixed statistics, enough to check the plumbing.
  f = len(wave) * 25 // 16000
  frames = wave[: f * 640].reshape(f, 640)
  return np.stack([frames.std(1), frames.mean(1), np.abs(frames).max(1)], -1)[:, None, :].repeat(2, 1)


def test_extract_writes_shards_and_lists_bad_files(tmp_path, audio_dir):
  paths = speech.list_audio([str(audio_dir)])
  assert len(paths) == 7 and not any(p.endswith(".txt") for p in paths)
  # A file that vanished after it was listed is skipped with the others (the command refuses a missing input).
  paths.append(str(tmp_path / "missing.wav"))
  out = speech.extract_speech(paths, str(tmp_path / "out"), _stub_features, min_frames=17, val_fraction=0.3,
                              examples_per_shard=2, progress=False)
  skipped = dict(out["skipped"])
  assert set(map(os.path.basename, skipped)) == {"broken.wav", "missing.wav", "short.wav"}
  assert "broken.wav" in skipped[str(audio_dir / "broken.wav")]  # the reason names the file
  assert "too short: 5 frames" in skipped[str(audio_dir / "short.wav")]
  assert out["train"] + out["val"] == out["written"] == 5
  listed = (tmp_path / "out" / "skipped.txt").read_text().splitlines()
  assert len(listed) == 3
  assert sorted(os.listdir(tmp_path / "out")) == sorted(  # 2 examples a shard; nothing else left beside them
      ["report.json", "skipped.txt"] + [os.path.basename(p) for s in ("train", "val") for p in out["shards"][s]])

  got = {}
  for split in ("train", "val"):
    if out[split]:
      for ex in records.read_source(records.expand_paths(str(tmp_path / "out" / f"{split}-*"))):
        got[str(ex["source"])] = (split, ex["speech"])
  assert len(got) == 5
  for path, (split, s) in got.items():
    assert s.dtype == np.float16 and s.shape == (40, 2, 3)
    np.testing.assert_allclose(s, _stub_features(soundfile.read(path, dtype="float32")[0]), rtol=1e-3, atol=1e-3)
    assert (split == "val") == speech.is_val(path, 0.3)  # the split is a stable function of the path


def test_whisper_features_end_to_end(tmp_path, audio_dir):
  """The real front end with the tiny random-weight "test" Whisper (1 s windows): S [F, 10, D]."""
  from read_jax import speech as speech_lib
  from read_jax.models import whisper
  encoder = whisper.encoder_from_config(whisper.size_config("test"))
  mel = jax.ShapeDtypeStruct((1, 2 * 50, encoder.num_mel_bins), np.float32)
  enc = speech_lib.WhisperSpeechEncoder(encoder, jax.jit(encoder.init)(jax.random.key(0), np.zeros(mel.shape,
                                                                                             mel.dtype))["params"])
  paths = [str(audio_dir / "sub" / "clip0.wav"), str(audio_dir / "broken.wav")]
  out = speech.extract_speech(paths, str(tmp_path / "out"), lambda w: speech_lib.speech_features(w, enc),
                              min_frames=17, val_fraction=0.0, progress=False)
  assert out["train"] == 1 and [os.path.basename(p) for p, _ in out["skipped"]] == ["broken.wav"]
  ex = records.read_source(out["shards"]["train"])[0]
  assert ex["speech"].shape == (40, 10, encoder.d_model) and np.isfinite(ex["speech"]).all()


def test_rerun_resumes_after_an_interrupt(tmp_path, audio_dir):
  """Ctrl-C in the middle: the full shards stay (listed in the report), the open one is dropped, no temp is
  left; the rerun featurizes only what is not in a listed shard and ends with every file exactly once."""
  paths = speech.list_audio([str(audio_dir / "sub")])  # 5 good files
  out_dir = tmp_path / "out"
  calls = []

  def interrupted(wave):
    if len(calls) == 3:
      raise KeyboardInterrupt
    calls.append(len(wave))
    return _stub_features(wave)

  with pytest.raises(KeyboardInterrupt):
    speech.extract_speech(paths, str(out_dir), interrupted, min_frames=17, val_fraction=0.0, examples_per_shard=2,
                          progress=False)
  assert sorted(os.listdir(out_dir)) == ["report.json", "skipped.txt", "train-00000.array_record"]
  assert [str(ex["source"]) for ex in records.read_source([str(out_dir / "train-00000.array_record")])] == paths[:2]

  calls.clear()
  out = speech.extract_speech(paths, str(out_dir), lambda w: calls.append(1) or _stub_features(w), min_frames=17,
                              val_fraction=0.0, examples_per_shard=2, progress=False)
  assert len(calls) == 3 and out["train"] == 5 and out["written"] == 3
  sources = [str(ex["source"]) for ex in records.read_source(out["shards"]["train"])]
  assert sorted(sources) == sorted(paths) and len(out["shards"]["train"]) == 3
  assert not (out_dir / ".tmp").exists()
  with pytest.raises(ValueError, match="min_frames"):  # a rerun with other settings would mix two datasets
    speech.extract_speech(paths, str(out_dir), _stub_features, min_frames=9, val_fraction=0.0, progress=False)
