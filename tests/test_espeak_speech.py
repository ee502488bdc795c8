"""espeak-ng speech for the synthetic talking faces (read_jax/data/espeak.py, synthetic.make_clip(speech=...)).

The held-out test rests on the voice pools: whole languages and whole voice variants never reach training.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from read_jax.data import espeak, synthetic
from read_jax.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_espeak = pytest.mark.skipif(not espeak.available(), reason="espeak-ng is not installed (apt-get install espeak-ng)")


def test_pools_keep_languages_and_voices_out_of_training():
  train_langs, train_variants = espeak.POOLS["train"]
  unseen_langs, unseen_variants = espeak.POOLS["unseen"]
  seen_langs, seen_variants = espeak.POOLS["seen-language"]
  assert not set(train_langs) & set(unseen_langs)
  assert not set(train_variants) & set(unseen_variants)
  assert set(seen_langs) <= set(train_langs) and set(seen_variants) == set(unseen_variants)
  rng = np.random.default_rng(0)
  for _ in range(200):
    v = espeak.pick_voice(rng, "train", 150.0)
    assert v.language in train_langs and v.variant in train_variants
  # Test seeds default to the unseen pool, training and validation seeds to training's.
  assert synthetic.default_voices(synthetic.split_seeds("test", 1)[0]) == "unseen"
  assert synthetic.default_voices(synthetic.split_seeds("val", 1)[0]) == "train"


def test_bad_options():
  with pytest.raises(InputError, match="--speech 'speak'"):
    synthetic.make_clip(0, 1.0, 32, speech="speak")
  with pytest.raises(InputError, match="--voices 'all'"):
    synthetic.make_clip(0, 1.0, 32, speech="espeak", voices="all")


def test_missing_espeak_is_one_clear_error(monkeypatch):
  monkeypatch.setattr(espeak.shutil, "which", lambda name: None)
  with pytest.raises(InputError, match="apt-get install espeak-ng"):
    synthetic.make_clip(0, 1.0, 32, speech="espeak")
  synthetic.make_clip(0, 1.0, 32)  # formant speech needs nothing


def _silent_runs(audio, threshold):
  """Lengths in seconds of the runs of 20 ms frames whose RMS is under ``threshold``."""
  frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
  quiet = np.sqrt((frames.astype(np.float64) ** 2).mean(1)) < threshold
  runs, n = [], 0
  for q in quiet:
    if q:
      n += 1
    elif n:
      runs.append(n * 0.02)
      n = 0
  return runs + ([n * 0.02] if n else [])


@needs_espeak
def test_espeak_clip_is_deterministic_and_the_mouth_follows_it():
  seed = synthetic.split_seeds("test", 1, 7)[0]
  a = synthetic.make_clip(seed, 6.0, 32, speech="espeak")
  b = synthetic.make_clip(seed, 6.0, 32, speech="espeak")
  np.testing.assert_array_equal(a.audio, b.audio)
  np.testing.assert_array_equal(a.frames, b.frames)
  lang, _, variant = a.voice.partition("+")
  assert lang in espeak.HELD_OUT_LANGUAGES and variant in espeak.HELD_OUT_VARIANTS
  assert a.audio.shape == (150 * synthetic.SAMPLES_PER_FRAME,) and 0.3 < np.abs(a.audio).max() <= 0.7
  # The same face as with formant speech; only the mouth (and so the frames) follows the other audio.
  formant = synthetic.make_clip(seed, 6.0, 32)
  assert formant.identity == a.identity and formant.voice == "formant"
  assert not np.allclose(formant.audio, a.audio)
  env = synthetic.audio_envelope(a.audio, len(a.mouth), a.identity.mouth_lead)
  assert np.corrcoef(env, a.mouth)[0, 1] > 0.95
  # Real speech: it is voiced most of the time, and the mouth closes in its pauses and opens in its syllables.
  assert 0.3 < (a.mouth > 0.1).mean() < 0.95 and (a.mouth < 0.02).mean() > 0.05


@needs_espeak
def test_held_out_clips_pause_half_a_second_or_more():
  for i in range(3):
    seed = synthetic.split_seeds("test", 1, i)[0]
    clip = synthetic.make_clip(seed, 6.0, 32, speech="espeak", voices="seen-language")
    assert clip.voice.startswith("en-us+")
    runs = _silent_runs(clip.audio, 0.01 * np.abs(clip.audio).max())
    assert max(runs) >= 0.45, (clip.voice, runs)


@needs_espeak
def test_mixed_speech_is_both_kinds_and_the_script_records_the_voice(tmp_path):
  kinds = {synthetic.make_clip(s, 0.4, 32, speech="mixed").voice == "formant" for s in range(12)}
  assert kinds == {True, False}
  out = tmp_path / "set"
  result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_synthetic.py"), "--out", str(out),
                           "--num", "2", "--seconds", "1", "--size", "32", "--speech", "espeak"],
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  voices = [json.load(open(out / f"synth_{s:07d}.json"))["voice"] for s in range(2)]
  assert all(v.partition("+")[0] in espeak.TRAIN_LANGUAGES for v in voices)
