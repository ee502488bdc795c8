"""The synthetic talking-face set and the pixel mouth-opening measure (docs/design.md §3.7)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from read_jax.data import synthetic
from read_jax.eval import mouth_opening

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _corr(a, b):
  return float(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module")
def clips():
  """Three speakers, 3 s at 128²."""
  return [synthetic.make_clip(seed, 3.0, size=128) for seed in (0, 11, 2_000_007)]


def test_same_seed_same_clip():
  a, b = synthetic.make_clip(5, 1.0, size=48), synthetic.make_clip(5, 1.0, size=48)
  assert a.identity == b.identity
  np.testing.assert_array_equal(a.audio, b.audio)
  np.testing.assert_array_equal(a.frames, b.frames)
  np.testing.assert_array_equal(a.mouth, b.mouth)


def test_seeds_differ():
  ids = [synthetic.make_identity(seed) for seed in range(8)]
  for field in ("skin", "background", "face_x", "face_ry", "f0", "syllable_rate", "mouth_lead"):
    values = {getattr(i, field) for i in ids}
    assert len(values) == len(ids), field
  f0 = np.array([i.f0 for i in ids])
  assert f0.min() >= 90 and f0.max() <= 250 and np.ptp(f0) > 50
  assert all(abs(i.mouth_lead) <= 1 for i in ids)
  a, b = synthetic.make_clip(0, 1.0, size=32), synthetic.make_clip(1, 1.0, size=32)
  assert not np.array_equal(a.audio, b.audio) and not np.array_equal(a.frames, b.frames)
  # A shared identity keeps the look and voice but not the words.
  c = synthetic.make_clip(1, 1.0, size=32, identity=a.identity)
  assert c.identity == a.identity and not np.array_equal(c.audio, a.audio)
  np.testing.assert_array_equal(c.frames[0, 0, 0], a.frames[0, 0, 0])  # same backdrop


@pytest.mark.parametrize("seconds, frames", [(2.0, 50), (1.32, 33), (0.04, 1)])
def test_lengths_agree(seconds, frames):
  clip = synthetic.make_clip(3, seconds, size=24)
  assert clip.frames.shape == (frames, 24, 24, 3) and clip.frames.dtype == np.uint8
  assert clip.audio.shape == (round(16000 * seconds),) and clip.audio.dtype == np.float32
  assert clip.mouth.shape == (frames,) and clip.mouth.dtype == np.float32
  assert clip.fps == 25 and clip.sample_rate == 16000
  assert np.abs(clip.audio).max() <= 1 and 0 <= clip.mouth.min() and clip.mouth.max() <= 1


def test_bad_arguments():
  with pytest.raises(ValueError, match="seconds"):
    synthetic.make_clip(0, 0.01)
  with pytest.raises(ValueError, match="size"):
    synthetic.make_clip(0, 1.0, size=4)
  with pytest.raises(ValueError, match="split"):
    synthetic.split_seeds("holdout", 3)


def test_splits_are_disjoint_seed_ranges():
  train, val, test = (set(synthetic.split_seeds(s, 1000)) for s in ("train", "val", "test"))
  assert len(train) == 1000 and not (train & val) and not (train & test) and not (val & test)
  assert list(synthetic.split_seeds("test", 2, start=5)) == [2_000_005, 2_000_006]


def test_audio_is_speech_like(clips):
  for clip in clips:
    env = synthetic.audio_envelope(clip.audio, len(clip.mouth))
    # Syllables and pauses: the envelope swings between near silence and loud.
    assert np.quantile(env, 0.1) < 0.1 * env.max()
    # Voiced: in the loudest frames the pitch (autocorrelation peak) is near the speaker's f0.
    f0s = []
    for f in np.argsort(env)[-8:]:
      seg = clip.audio[f * 640:(f + 1) * 640].astype(np.float64)
      ac = np.correlate(seg, seg, "full")[639:]
      lo, hi = 16000 // 400, 16000 // 60
      f0s.append(16000 / (lo + np.argmax(ac[lo:hi])))
    assert 0.7 * clip.identity.f0 < np.median(f0s) < 1.4 * clip.identity.f0, (np.median(f0s), clip.identity.f0)


def test_mouth_track_follows_audio_envelope(clips):
  for clip in clips:
    # Plain per-frame RMS, independent of the generator's own envelope code.
    rms = np.sqrt((clip.audio.astype(np.float64).reshape(-1, 640) ** 2).mean(-1))
    assert _corr(rms, clip.mouth) > 0.85
    # The mouth leads or lags the sound by at most one frame: the best shift is within ±1.
    shifts = {s: _corr(np.roll(rms, -s)[2:-2], clip.mouth[2:-2]) for s in range(-3, 4)}
    assert abs(max(shifts, key=shifts.get)) <= 1, shifts
    lead = synthetic.audio_envelope(clip.audio, len(clip.mouth), clip.identity.mouth_lead)
    assert _corr(lead, clip.mouth) > 0.95


def test_render_face():
  idn = synthetic.make_identity(4)
  closed, opened = (synthetic.render_face(idn, m, 0.0, (0.0, 0.0), 96) for m in (0.0, 1.0))
  assert closed.shape == (96, 96, 3) and closed.dtype == np.uint8
  dark = lambda img: int((img.astype(int).sum(-1) < 150).sum())  # noqa: E731
  assert dark(opened) > dark(closed) + 50
  white = lambda img: int((img.min(-1) > 220).sum())  # noqa: E731  eye whites
  assert white(synthetic.render_face(idn, 0.0, 1.0, size=96)) < white(closed) - 10
  # A head offset of 0.05 frame widths moves the face 4.8 pixels right.
  moved = synthetic.render_face(idn, 0.0, 0.0, (0.05, 0.0), 96)
  centre_x = lambda img: np.nonzero((img != img[0, 0]).any(-1))[1].mean()  # noqa: E731
  assert centre_x(moved) - centre_x(closed) == pytest.approx(4.8, abs=0.3)
  with pytest.raises(ValueError, match="size"):
    synthetic.render_face(idn, size=2.5)


def test_mouth_opening_matches_truth(clips):
  cv2 = pytest.importorskip("cv2")
  for clip in clips:
    variants = {
        "ground truth": clip.frames,
        "blur": np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in clip.frames]),
        "64x64": np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in clip.frames]),
        "colour shift": np.clip(clip.frames.astype(int) + [14, -9, 6], 0, 255).astype(np.uint8),
        "[-1, 1] floats": clip.frames.astype(np.float32) / 127.5 - 1,
    }
    for name, frames in variants.items():
      measured = mouth_opening(frames)
      assert measured.shape == clip.mouth.shape and np.isfinite(measured).all(), name
      assert _corr(measured, clip.mouth) >= 0.95, (name, clip.seed)


def test_mouth_opening_ignores_blinks_and_head_motion():
  idn = synthetic.make_identity(9)
  num = 40
  t = np.arange(num)
  head = 0.03 * np.stack([np.sin(t / 4), np.cos(t / 5)], -1)
  blink = (t % 10 < 3).astype(float)
  still = mouth_opening(synthetic._render(idn, np.full(num, 0.5), blink, head, 96))
  span = mouth_opening(synthetic._render(idn, np.array([0.0, 1.0]), np.zeros(2), np.zeros((2, 2)), 96))
  assert np.ptp(still) < 0.03 * (span[1] - span[0]), (np.ptp(still), span)


def test_mouth_opening_bad_input():
  with pytest.raises(ValueError, match="RGB"):
    mouth_opening(np.zeros((4, 32, 32), np.uint8))
  with pytest.raises(ValueError, match=r"\[-1, 1\]"):
    mouth_opening(np.full((2, 32, 32, 3), 200.0, np.float32))
  blank = mouth_opening(np.full((32, 32, 3), 90, np.uint8))  # no face: NaN, not a number
  assert np.ndim(blank) == 0 and np.isnan(blank)


def test_write_clip_reads_back(tmp_path, clips):
  imageio = pytest.importorskip("imageio")
  soundfile = pytest.importorskip("soundfile")
  clip = clips[0]
  mp4, wav, track = synthetic.write_clip(clip, tmp_path / "out", "clip0")
  reader = imageio.get_reader(mp4, "ffmpeg")
  meta = reader.get_meta_data()
  frames = np.stack(list(reader.iter_data()))
  reader.close()
  assert frames.shape == clip.frames.shape
  assert meta["fps"] == 25 and meta.get("audio_codec"), meta  # the speech is inside the mp4
  assert np.abs(frames.astype(int) - clip.frames).mean() < 3  # near-lossless H.264
  assert _corr(mouth_opening(frames), clip.mouth) >= 0.95
  audio, rate = soundfile.read(wav, dtype="float32")
  assert rate == 16000 and audio.shape == clip.audio.shape
  np.testing.assert_allclose(audio, clip.audio, atol=1 / 16000)
  with open(track) as fh:
    data = json.load(fh)
  np.testing.assert_allclose(data["mouth"], clip.mouth, atol=1e-5)
  assert data["seed"] == clip.seed and data["identity"]["f0"] == clip.identity.f0
  with pytest.raises(ValueError, match="even"):
    synthetic.write_clip(synthetic.make_clip(0, 0.2, size=33), tmp_path, "odd")


def test_script_writes_clips(tmp_path):
  cmd = [sys.executable, os.path.join(REPO, "scripts", "make_synthetic.py"), "--out", str(tmp_path),
         "--num", "2", "--seconds", "0.4", "--size", "32", "--seed", "3", "--split", "val"]
  subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
  names = sorted(os.listdir(tmp_path))
  assert names == [f"synth_{s:07d}{ext}" for s in (1_000_003, 1_000_004) for ext in (".json", ".mp4", ".wav")]
  mtime = os.path.getmtime(tmp_path / names[1])
  subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)  # a rerun keeps what is there
  assert os.path.getmtime(tmp_path / names[1]) == mtime
  bad = subprocess.run(cmd[:-6] + ["--size", "31"], capture_output=True, text=True, cwd=REPO)
  assert bad.returncode != 0 and "--size" in bad.stderr
