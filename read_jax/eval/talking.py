"""What a generated talking-head video is scored on (README "Demo model"; paper §4, Fig. 2).

  lip_sync_correlation(frames, mouth)     Pearson r of the measured mouth opening with the true opening,
                                          at the best lag within ±``max_shift`` frames
  face_colour_error(frames, reference)    mean RGB distance between the face colours of the video and the
                                          reference portrait (identity kept?)
  boundary_ratio(frames, boundaries)      mean |frame difference| across clip boundaries / within clips
                                          (1 = a boundary is as smooth as any other frame; ANS vs plain
                                          clip concatenation is the paper's Fig. 2 ablation)

All take uint8 [F, H, W, 3] frames (or float in [−1, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from read_jax.eval.mouth import mouth_opening, to_rgb255
from read_jax.constants import FRAMES_PER_LATENT

_BACKDROP_DIST = 40.0  # RGB distance from the border colour beyond which a reference pixel is the face


def pearson(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  a, b = a - a.mean(), b - b.mean()
  denom = np.sqrt((a * a).sum() * (b * b).sum())
  return float((a * b).sum() / denom) if denom > 0 else 0.0


def lip_sync_correlation(frames, mouth, max_shift: int = 1) -> tuple[float, int]:
  """``(r, lag)``: the largest Pearson r between ``mouth_opening(frames)`` and ``mouth`` [F] over lags
  −max_shift … max_shift frames (the mouth may lead or lag the sound by a frame), and that lag."""
  measured = mouth_opening(frames)
  mouth = np.asarray(mouth, np.float64)
  if measured.shape != mouth.shape:
    raise ValueError(f"lip_sync_correlation: {measured.shape[0]} frames but a mouth track of {mouth.shape[0]}")
  best = (-np.inf, 0)
  for lag in range(-max_shift, max_shift + 1):
    a = measured[max(lag, 0):len(measured) + min(lag, 0)]
    b = mouth[max(-lag, 0):len(mouth) + min(-lag, 0)]
    best = max(best, (pearson(a, b), lag))
  return best


def face_mask(reference) -> np.ndarray:
  """bool [H, W]: the reference's pixels that differ from its backdrop (the median border colour)."""
  ref = to_rgb255(reference)[0]
  border = np.concatenate([ref[0], ref[-1], ref[:, 0], ref[:, -1]])
  backdrop = np.median(border, axis=0)
  return np.linalg.norm(ref - backdrop, axis=-1) > _BACKDROP_DIST


def face_colour_error(frames, reference) -> float:
  """Mean over frames of the RGB distance (0–255 scale) between the mean colour of the reference's face
  region in the frame and in the reference: low when the video keeps the reference's skin, hair and
  lip colours (the head moves a little, so this is a region mean, not a per-pixel error)."""
  mask = face_mask(reference)
  if not mask.any():
    raise ValueError("face_colour_error: the reference has no pixel apart from its backdrop")
  ref = to_rgb255(reference)[0][mask].mean(0)
  x = to_rgb255(frames)
  if x.shape[1:3] != mask.shape:
    raise ValueError(f"face_colour_error: frames are {x.shape[1:3]}, the reference {mask.shape}")
  per_frame = x[:, mask].mean(1)  # [F, 3]
  return float(np.linalg.norm(per_frame - ref, axis=-1).mean())


def boundary_ratio(frames, boundaries: Sequence[int]) -> float:
  """Mean |x[b] − x[b−1]| over the boundaries b (first frame of a new clip) divided by the same mean over
  every other pair of consecutive frames."""
  x = to_rgb255(frames)
  diffs = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))  # diffs[i] = |x[i+1] − x[i]|
  at = np.zeros(len(diffs), bool)
  at[[b - 1 for b in boundaries if 0 < b < len(x)]] = True
  if not at.any() or at.all():
    raise ValueError(f"boundary_ratio: need boundaries inside the {len(x)} frames and frames between them")
  return float(diffs[at].mean() / max(diffs[~at].mean(), 1e-12))


def clip_boundaries(num_video_frames: int, clip_frames: int, temporal_ratio: int = FRAMES_PER_LATENT) -> list[int]:
  """First video frame of each clip after the first, for clips of ``clip_frames`` latent frames
  overlapping by one (ANS): clip 0 gives 1 + r(f − 1) frames, every later clip r(f − 1)."""
  first, step = 1 + temporal_ratio * (clip_frames - 1), temporal_ratio * (clip_frames - 1)
  return list(range(first, num_video_frames, step))


def latent_boundaries(num_video_frames: int, first: int = 1,
                      temporal_ratio: int = FRAMES_PER_LATENT) -> list[int]:
  """First video frame of every latent frame after the first: ``first``, first + 8, … (clip mode's latent 0 is
  frame 0 alone, so its latent frames start at 1, 9, …; the rolling mode's at 0, 8, 16, …)."""
  return list(range(first, num_video_frames, temporal_ratio))


def flicker(frames) -> float:
  """Mean |x[i+1] − 2·x[i] + x[i−1]| over pixels and frames (0–255): the jitter that steady motion does not
  explain (smooth motion has a small second difference, a frame that jumps and comes back a large one)."""
  x = to_rgb255(frames)
  if len(x) < 3:
    raise ValueError(f"flicker: need at least 3 frames, got {len(x)}")
  return float(np.abs(x[2:] - 2 * x[1:-1] + x[:-2]).mean())


def silence_mask(mouth, min_frames: int = 12, closed: float = 0.02, margin: int = 2) -> np.ndarray:
  """bool [F]: frames inside a pause, i.e. a run of at least ``min_frames`` (0.48 s at 25 fps) frames whose true
  opening is under ``closed``, less ``margin`` frames at each end of the run (the mouth closing and opening)."""
  quiet = np.asarray(mouth, np.float64) < closed
  out = np.zeros(len(quiet), bool)
  start = None
  for i, q in enumerate(np.append(quiet, False)):
    if q and start is None:
      start = i
    elif not q and start is not None:
      if i - start >= min_frames:
        out[start + margin:i - margin] = True
      start = None
  return out


def silence_scores(frames, truth_frames, mouth) -> dict[str, float]:
  """Mean measured mouth opening in pauses (:func:`silence_mask`) and in speech (true opening > 0.1), of the
  generated ``frames`` and of the ground-truth video ``truth_frames``, with the truth's closed range (its 95th
  percentile in pauses). NaN where a clip has no pause."""
  silent, speaking = silence_mask(mouth), np.asarray(mouth) > 0.1
  gen, true = mouth_opening(frames), mouth_opening(truth_frames)
  mean = lambda x, m: float(np.nanmean(x[m])) if m.any() else float("nan")  # noqa: E731
  return {"mouth_silence": mean(gen, silent), "mouth_speech": mean(gen, speaking),
          "mouth_silence_truth": mean(true, silent), "mouth_speech_truth": mean(true, speaking),
          "mouth_silence_truth_p95": float(np.nanpercentile(true[silent], 95)) if silent.any() else float("nan"),
          "silence_frames": int(silent.sum())}
