"""Scores of a talking-head video from a real face model: landmarks, identity, LMD, mouth motion (paper §4).

The models are dlib's, run on the CPU with no network:

  * the frontal face detector (HOG + linear SVM, ``dlib.get_frontal_face_detector()``);
  * the 68-point shape predictor (iBUG 300-W layout: jaw 0–16, brows 17–26, nose 27–35, eyes 36–47,
    outer lips 48–59, inner lips 60–67);
  * the 128-d ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``; two photos are the same
    person when the Euclidean distance of their descriptors is under 0.6, dlib's own threshold).

They are an optional extra, ``pip install -e ".[faces]"`` (PyPI ``dlib-bin`` and ``face-recognition-models``),
and are never bundled in this repository: the 68-point predictor was trained on iBUG 300-W, whose licence
excludes commercial use, so a score computed with it is for research. (``face_recognition_models`` is located
with ``importlib.util.find_spec``, never imported: its ``__init__`` needs ``pkg_resources``.)

  FaceModels.load(folder)             the three models (a missing dlib or model file: ConfigError)
  models.track(frames)                FaceTrack: landmarks [T, 68, 2] (NaN where no face), found [T], boxes [T, 4]
  models.descriptor(frame, face)      [128] identity descriptor of the face given by its landmarks or box
  identity_similarity(a, b)           cosine of two descriptors
  lmd(track_a, track_b)               mouth landmark distance, frame by frame, in inter-ocular distances
  mouth_aspect(landmarks)             [T] inner-lip opening over mouth width
  envelope_sync(mouth, audio)         Pearson r of a mouth track with the speech RMS envelope, best lag ±1 frame
  silence_closure(mouth, audio)       mean mouth opening in pauses vs in speech
  expression_frechet(a, b)            Fréchet distance of Procrustes-aligned landmark shapes (NOT the paper's E-FID)
  expression_fid(videos_a, videos_b, expression_model)
                                      E-FID proper, from a 3DMM expression-coefficient extractor you supply

Frames are uint8 RGB [T, H, W, 3]; landmarks are (x, y) pixels.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from read_jax.data.synthetic import FPS, SAMPLE_RATE, audio_envelope
from read_jax.errors import ConfigError
from read_jax.eval.frechet import frechet_from_features
from read_jax.eval.talking import pearson, silence_mask

INSTALL_HINT = 'pip install -e ".[faces]"'
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
NUM_LANDMARKS = 68
MOUTH = slice(48, 68)  # outer and inner lips
EYE_OUTER = (36, 45)  # outer corners of the right and left eye (the subject's): the inter-ocular distance
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper / lower inner-lip points facing each other
MOUTH_CORNERS = (48, 54)
# The HOG detector's window is 80×80 px, and a talking head is about a third of its frame: frames are upsampled
# (by doubling, dlib's pyramid) until their short side reaches this, so a 176×144 clip is searched at 352×288.
MIN_DETECT_SIDE = 256
MAX_UPSAMPLE = 3
# silence_closure: the speech envelope over its 95th percentile; a pause is a run of frames under _SILENT_LEVEL
# (silence_mask's rules: ≥ 12 frames, 2 trimmed at each end), speech is over _SPEECH_LEVEL. The levels are those
# of read_jax.data.synthetic's ground-truth opening (floor 0.05, closed < 0.02, speaking > 0.1) in envelope units.
_SILENT_LEVEL = 0.07
_SPEECH_LEVEL = 0.15
_PROCRUSTES_ITERS = 5  # generalised Procrustes: the mean shape moves < 1e-6 after 3 on real tracks

# A 3DMM expression extractor for expression_fid: uint8 frames [T, H, W, 3] → expression coefficients [T, k]
# (e.g. Deep3DFaceRecon's 64 expression coefficients, as the paper's E-FID uses).
ExpressionModel = Callable[[np.ndarray], np.ndarray]


def _models_folder() -> str | None:
  spec = importlib.util.find_spec("face_recognition_models")
  return os.path.join(os.path.dirname(spec.origin), "models") if spec is not None and spec.origin else None


@dataclasses.dataclass(frozen=True)
class FaceTrack:
  """The face in each frame of a video (index it like an array: ``track[2:]`` is a shorter track)."""
  landmarks: np.ndarray  # float64 [T, 68, 2] (x, y) pixels; NaN where no face was found
  found: np.ndarray  # bool [T]
  boxes: np.ndarray  # float64 [T, 4] (x, y, w, h) detector box the landmarks were fitted in; NaN where none

  def __len__(self) -> int:
    return len(self.found)

  def __getitem__(self, index) -> FaceTrack:
    return FaceTrack(self.landmarks[index], self.found[index], self.boxes[index])


@dataclasses.dataclass(frozen=True)
class FaceModels:
  """dlib's face detector, 68-point shape predictor and 128-d face descriptor (see the module docstring)."""
  detector: Any  # dlib.fhog_object_detector
  predictor: Any  # dlib.shape_predictor
  encoder: Any  # dlib.face_recognition_model_v1

  @classmethod
  def load(cls, folder: str | None = None) -> FaceModels:
    """The models from ``folder`` (default: the ``face_recognition_models`` package's ``models/``)."""
    try:
      import dlib
    except ImportError as e:
      raise ConfigError(f"face scores need dlib ({e}): {INSTALL_HINT}") from None
    folder = folder if folder is not None else _models_folder()
    if folder is None:
      raise ConfigError(f"face scores need the face-recognition-models package: {INSTALL_HINT}")
    paths = [os.path.join(folder, name) for name in (PREDICTOR_FILE, DESCRIPTOR_FILE)]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
      raise ConfigError(f"{missing[0]}: no such model file (face scores need face-recognition-models: {INSTALL_HINT})")
    return cls(dlib.get_frontal_face_detector(), dlib.shape_predictor(paths[0]),
               dlib.face_recognition_model_v1(paths[1]))

  def detect(self, frame, upsample: int | None = None) -> list[tuple[float, float, float, float]]:
    """Face boxes (x, y, w, h) in ``frame`` uint8 [H, W, 3], largest first; ``upsample``: doublings of the frame
    before the search (None: enough for its short side to reach MIN_DETECT_SIDE)."""
    frame = _frame(frame)
    if upsample is None:
      upsample = auto_upsample(frame.shape[:2])
    rects = sorted(self.detector(frame, upsample), key=lambda r: -r.area())
    return [(r.left(), r.top(), r.width(), r.height()) for r in rects]

  def fit(self, frame, box) -> np.ndarray:
    """float64 [68, 2]: the landmarks of the face in ``box`` (x, y, w, h)."""
    import dlib
    x, y, w, h = (int(round(v)) for v in box)
    shape = self.predictor(_frame(frame), dlib.rectangle(x, y, x + w - 1, y + h - 1))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float64)

  def track(self, frames, detect_every: int = 1, upsample: int | None = None) -> FaceTrack:
    """The largest face in each of ``frames`` uint8 [T, H, W, 3].

    The detector runs on every ``detect_every``-th frame (and on any frame after one with no face); the frames in
    between reuse the last box, and the landmarks are fitted afresh on every frame, so they follow the mouth even
    while the box stands still (the predictor tolerates a box a few pixels off). ``detect_every`` = 5 is about 4×
    faster on a 176×144 clip, where detection dominates; but a face that leaves (or turns too far for the detector)
    is noticed only at the next detection, and the frames until then keep landmarks fitted in the stale box.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ValueError(f"track: need uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if detect_every < 1:
      raise ValueError(f"track: detect_every must be ≥ 1, got {detect_every}")
    t = len(frames)
    landmarks = np.full((t, NUM_LANDMARKS, 2), np.nan)
    boxes = np.full((t, 4), np.nan)
    if upsample is None:
      upsample = auto_upsample(frames.shape[1:3])
    box = None
    for i, frame in enumerate(frames):
      if box is None or i % detect_every == 0:
        found = self.detect(frame, upsample)
        box = found[0] if found else None
      if box is not None:
        boxes[i] = box
        landmarks[i] = self.fit(frame, box)
    return FaceTrack(landmarks, ~np.isnan(boxes[:, 0]), boxes)

  def descriptor(self, frame, face) -> np.ndarray:
    """float64 [128]: the identity descriptor of the face in ``frame`` uint8 [H, W, 3] given by its landmarks
    [68, 2] or its box (x, y, w, h) (the landmarks are then fitted in it). dlib aligns the face chip on the
    landmarks (150², 25 % padding) before the network, so head pose and scale matter little."""
    import dlib
    frame = _frame(frame)
    face = np.asarray(face, np.float64)
    if face.shape == (4,):
      face = self.fit(frame, face)
    if face.shape != (NUM_LANDMARKS, 2) or not np.isfinite(face).all():
      raise ValueError(f"descriptor: need finite landmarks [68, 2] or a box (x, y, w, h), got shape {face.shape}")
    pts = np.round(face).astype(int)
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                       [dlib.point(int(x), int(y)) for x, y in pts])
    return np.array(self.encoder.compute_face_descriptor(frame, shape), np.float64)


def auto_upsample(shape: Sequence[int]) -> int:
  """Doublings for the detector to see a frame of ``shape`` (H, W) with its short side ≥ MIN_DETECT_SIDE."""
  side, n = min(shape[:2]), 0
  while side * 2 ** n < MIN_DETECT_SIDE and n < MAX_UPSAMPLE:
    n += 1
  return n


def _frame(frame) -> np.ndarray:
  frame = np.asarray(frame)
  if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
    raise ValueError(f"need a uint8 RGB frame [H, W, 3], got {frame.dtype} {frame.shape}")
  return np.ascontiguousarray(frame)  # dlib reads the buffer: a flipped or sliced view must be copied


def identity_similarity(desc_a, desc_b):
  """Cosine of descriptors [..., 128] (broadcast). dlib's descriptors are not centred, so different faces still
  score high: its descriptors have norms near 1.4, where its same-person rule (distance < 0.6) is cosine > ~0.91.
  Measured (tests/test_eval_faces.py): one man over a 4 s clip ≥ 0.947 to its first frame, 0.99 mirrored; a
  different (drawn) face 0.88."""
  a, b = np.asarray(desc_a, np.float64), np.asarray(desc_b, np.float64)
  cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
  return float(cos) if np.ndim(cos) == 0 else cos


def inter_ocular(landmarks) -> np.ndarray:
  """[...]: distance between the outer eye corners (points 36 and 45) of landmarks [..., 68, 2]."""
  lm = np.asarray(landmarks, np.float64)
  return np.linalg.norm(lm[..., EYE_OUTER[0], :] - lm[..., EYE_OUTER[1], :], axis=-1)


def normalised_mouth(landmarks) -> np.ndarray:
  """[..., 20, 2]: the lip points 48–67 less their centroid, over the inter-ocular distance. The centroid removes
  where the head is; the division, how large the face is in the frame (so two videos of different sizes compare);
  the head's roll is left in (a talking head barely rolls, and a rotation would also turn a skewed mouth)."""
  lm = np.asarray(landmarks, np.float64)
  mouth = lm[..., MOUTH, :]
  return (mouth - mouth.mean(-2, keepdims=True)) / inter_ocular(lm)[..., None, None]


def lmd(track_a: FaceTrack, track_b: FaceTrack) -> float:
  """Mouth landmark distance (Chen et al. 2018, the paper's LMD): the mean Euclidean distance between matching
  lip points of frame t of a and of b, both :func:`normalised_mouth` (so in inter-ocular distances), over the frames
  where both found a face. NaN when there is no such frame."""
  if len(track_a) != len(track_b):
    raise ValueError(f"lmd: the videos have {len(track_a)} and {len(track_b)} frames")
  both = track_a.found & track_b.found
  if not both.any():
    return float("nan")
  d = np.linalg.norm(normalised_mouth(track_a.landmarks[both]) - normalised_mouth(track_b.landmarks[both]), axis=-1)
  return float(d.mean())


def mouth_aspect(landmarks) -> np.ndarray:
  """[T]: the inner-lip opening over the mouth width: the mean of the three inner-lip gaps 61–67, 62–66, 63–65
  over the corner distance 48–54 (the inner-lip mouth aspect ratio; 0 = lips together, ~0.3–0.5 wide open).
  NaN where the landmarks are (no face)."""
  lm = np.asarray(landmarks, np.float64)
  gaps = [np.linalg.norm(lm[..., i, :] - lm[..., j, :], axis=-1) for i, j in INNER_LIP_PAIRS]
  width = np.linalg.norm(lm[..., MOUTH_CORNERS[0], :] - lm[..., MOUTH_CORNERS[1], :], axis=-1)
  return np.mean(gaps, axis=0) / width


def speech_envelope(audio, num_frames: int) -> np.ndarray:
  """float64 [num_frames]: the RMS of 16 kHz ``audio`` in a 50 ms window at each 25 fps frame's centre
  (``read_jax.data.synthetic.audio_envelope``, the envelope the demo's lip-sync scores use)."""
  return audio_envelope(np.asarray(audio, np.float64), num_frames)


def _to_video_rate(track, fps: float) -> np.ndarray:
  """A track at ``fps`` linearly resampled to the 25 fps of :func:`speech_envelope` (NaN kept as NaN)."""
  track = np.asarray(track, np.float64)
  if track.ndim != 1:
    raise ValueError(f"need a mouth track [T], got shape {track.shape}")
  if fps == FPS:
    return track
  n = int(round(len(track) * FPS / fps))
  return np.interp(np.arange(n) / FPS, np.arange(len(track)) / fps, track)


def envelope_sync(mouth, audio, fps: float = FPS, max_shift: int = 1) -> tuple[float, int]:
  """``(r, lag)``: the largest Pearson r between the mouth track [T] (e.g. :func:`mouth_aspect`) and the speech
  RMS envelope of 16 kHz ``audio``, over lags −max_shift … max_shift frames at 25 fps (a positive lag: the mouth
  moves after the sound), using only frames with a finite mouth value. A track at another ``fps`` is resampled to
  25 fps first. A real mouth opens with the loud vowels, so this is high for good lip sync and near 0 for none."""
  mouth = _to_video_rate(mouth, fps)
  env = speech_envelope(audio, len(mouth))
  best = (-np.inf, 0)
  for lag in range(-max_shift, max_shift + 1):
    a = mouth[max(lag, 0):len(mouth) + min(lag, 0)]
    b = env[max(-lag, 0):len(env) + min(-lag, 0)]
    ok = np.isfinite(a)
    if ok.sum() > 2:
      best = max(best, (pearson(a[ok], b[ok]), lag))
  if not np.isfinite(best[0]):
    raise ValueError("envelope_sync: fewer than 3 frames with a mouth value")
  return best


def silence_closure(mouth, audio, fps: float = FPS) -> dict[str, float]:
  """Does the mouth close when the speaker pauses? The mean mouth track (e.g. :func:`mouth_aspect`) in pauses of
  the 16 kHz ``audio`` (runs of ≥ 12 frames whose envelope is under 7 % of its 95th percentile, 2 frames trimmed at
  each end, by :func:`read_jax.eval.talking.silence_mask`) and in speech (envelope over 15 %), and their ratio
  (< 1: the mouth is more closed in pauses). NaN where the audio has no pause or no speech."""
  mouth = _to_video_rate(mouth, fps)
  env = speech_envelope(audio, len(mouth))
  ref = np.quantile(env, 0.95)
  level = env / ref if ref > 0 else np.zeros_like(env)
  silent = silence_mask(level, closed=_SILENT_LEVEL) & np.isfinite(mouth)
  speaking = (level > _SPEECH_LEVEL) & np.isfinite(mouth)
  in_silence = float(mouth[silent].mean()) if silent.any() else float("nan")
  in_speech = float(mouth[speaking].mean()) if speaking.any() else float("nan")
  return {"mouth_silence": in_silence, "mouth_speech": in_speech,
          "silence_ratio": in_silence / in_speech if in_speech > 0 else float("nan"),
          "silence_frames": int(silent.sum())}


def _similarity_align(shapes, target) -> np.ndarray:
  """Each of shapes [N, P, 2] (centred, unit size) rotated and scaled onto ``target`` [P, 2] (orthogonal
  Procrustes, no reflection)."""
  m = np.einsum("npi,pj->nij", shapes, target)  # [N, 2, 2]
  u, s, vt = np.linalg.svd(m)
  det = np.sign(np.linalg.det(u @ vt))
  d = np.stack([np.ones_like(det), det], -1)  # flip the last axis where the best fit would be a reflection
  rot = (u * d[:, None, :]) @ vt
  scale = (s * d).sum(-1) / (shapes ** 2).sum((1, 2))
  return scale[:, None, None] * shapes @ rot


def procrustes_shapes(landmarks) -> np.ndarray:
  """float64 [N, 136]: each face's 68 landmarks [N, 68, 2] with where it is, how large and how rotated it is
  removed: centred, scaled to unit size and rotated onto the mean shape of all N (generalised Procrustes).
  What is left is the face's shape: its expression and its identity's proportions."""
  lm = np.asarray(landmarks, np.float64)
  lm = lm - lm.mean(1, keepdims=True)
  lm = lm / np.sqrt((lm ** 2).sum((1, 2), keepdims=True))
  mean = lm[0]
  for _ in range(_PROCRUSTES_ITERS):
    aligned = _similarity_align(lm, mean)
    mean = aligned.mean(0)
    mean = mean / np.sqrt((mean ** 2).sum())
  return _similarity_align(lm, mean).reshape(len(lm), -1)


def _found_landmarks(tracks) -> np.ndarray:
  tracks = [tracks] if isinstance(tracks, FaceTrack) else list(tracks)
  return np.concatenate([t.landmarks[t.found] for t in tracks])


def expression_frechet(tracks_a, tracks_b) -> float:
  """Landmark-expression Fréchet distance between two sets of videos (a FaceTrack or a list of them each).

  Every frame with a face gives its 68 landmarks, similarity-aligned by :func:`procrustes_shapes` onto the mean
  shape of both sets together (so a and b share one frame of reference), as a 136-d vector; the score is FID's
  formula (:func:`read_jax.eval.frechet.frechet_from_features`) between the Gaussians of the two sets' vectors.

  This is NOT the paper's E-FID: E-FID fits a 3D morphable face model to every frame and compares its expression
  coefficients, which separate expression from identity and head pose; 2-D landmarks still hold the identity's
  proportions and some out-of-plane pose. Compare scores of this function with each other, not with published
  E-FIDs; for E-FID proper, pass a 3DMM extractor to :func:`expression_fid`.
  """
  a, b = _found_landmarks(tracks_a), _found_landmarks(tracks_b)
  shapes = procrustes_shapes(np.concatenate([a, b]))
  return frechet_from_features(shapes[:len(a)], shapes[len(a):])


def expression_fid(videos_a: Sequence[np.ndarray], videos_b: Sequence[np.ndarray],
                   expression_model: ExpressionModel | None) -> float:
  """E-FID (the paper's): the Fréchet distance between the expression coefficients that ``expression_model``
  (a 3DMM reconstruction network: uint8 frames [T, H, W, 3] → [T, k]) gives for every frame of the videos
  ``videos_a`` and ``videos_b``. No such model ships with read_jax; without one use :func:`expression_frechet`."""
  if expression_model is None:
    raise ConfigError("expression_fid: needs a 3DMM expression model (frames [T, H, W, 3] → [T, k]); "
                      "without one, use expression_frechet (landmarks)")
  feats = []
  for videos in (videos_a, videos_b):
    coeffs = [np.asarray(expression_model(np.asarray(v)), np.float64) for v in videos]
    for v, c in zip(videos, coeffs):
      if c.ndim != 2 or len(c) != len(v):
        raise ValueError(f"expression_fid: the expression model gave {c.shape} for {len(v)} frames, not [T, k]")
    feats.append(np.concatenate(coeffs))
  return frechet_from_features(*feats)
