"""How open the mouth of a synthetic face is, measured from pixels (docs/design.md §3.7).

Lip sync on generated video is scored by comparing this measure with the audio envelope (or the
ground-truth track of ``read_jax.data.synthetic``). Generated frames are blurry, low-resolution and
a little off in colour, so nothing here relies on exact colours, positions or sizes:

  1. the backdrop colour is the median of the frame border; the skin colour is the median of the
     pixels that differ from it (the face is most of the foreground);
  2. the face box comes from the rows and columns that hold a good share of skin pixels, so holes
     (eyes, mouth), blur and stray pixels barely move it; its size is taken over the whole clip;
  3. in an elliptical window over the lower face (the drawn layout puts the lips there for every
     identity), the mouth is the dark mass: the sum of each pixel's darkness relative to the skin.

The sum is linear in the pixel values, so a blur (which moves darkness around but keeps its sum)
or a resize (the sum is divided by the face area in pixels) leaves it almost unchanged; and the
drawn mouth's dark area is linear in its opening, so the measure is an affine function of the
true opening for each identity. Compare it by correlation, not by value.
"""

from __future__ import annotations

import numpy as np

_FG_DIST = 40.0  # RGB distance (0..255) from the backdrop that marks a pixel as foreground
_SKIN_DIST = 40.0  # RGB distance from the skin colour within which a pixel counts as skin
_PROFILE_SHARE = 0.25  # a row/column is face if it holds this share of the fullest one's skin pixels
# Window over the lower face, in face half-widths/half-heights from the face centre: it holds the
# lips at every drawn opening (down to 0.8 half-heights) and stays clear of the nose (0.11) and
# of the face outline.
_WINDOW_V, _WINDOW_RU, _WINDOW_RV = 0.55, 0.6, 0.35
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma weights


def to_rgb255(frames) -> np.ndarray:
  """uint8 [0, 255] or float [-1, 1] frames → float32 [F, H, W, 3] in [0, 255] (checked: RGB, ≥ 16², finite,
  in range); the one pixel convention of every score here (:mod:`read_jax.eval.talking` too)."""
  x = np.asarray(frames)
  if x.ndim == 3:
    x = x[None]
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"mouth_opening: frames must be RGB [F, H, W, 3] or [H, W, 3], got shape {x.shape}")
  if x.shape[1] < 16 or x.shape[2] < 16:
    raise ValueError(f"mouth_opening: frames of {x.shape[1]}x{x.shape[2]} pixels are too small (need >= 16x16)")
  if x.dtype == np.uint8:
    return x.astype(np.float32)
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"mouth_opening: frames must be uint8 or floating in [-1, 1], got dtype {x.dtype}")
  x = x.astype(np.float32)
  if not np.isfinite(x).all():
    raise ValueError("mouth_opening: frames contain NaN or infinity")
  if x.size and (x.min() < -1.5 or x.max() > 1.5):
    raise ValueError(f"mouth_opening: floating frames must be in [-1, 1] (got values in [{x.min():.3g}, "
                     f"{x.max():.3g}]); pass uint8 for 0..255 pixels")
  return (np.clip(x, -1, 1) + 1) * 127.5


def _extent(profile):
  """First and one-past-last index where ``profile`` [N] reaches its share of the maximum, or None."""
  top = profile.max()
  if top <= 0:
    return None
  idx = np.nonzero(profile >= _PROFILE_SHARE * top)[0]
  return idx[0], idx[-1] + 1


def _sq_dist(x, colour):
  """Squared RGB distance of channels-first pixels x [3, F, H, W] to per-frame colours [3, F]."""
  return sum((x[c] - colour[c][:, None, None]) ** 2 for c in range(3))  # [F, H, W]


def _locate_faces(x):
  """Skin colour [3, F] and face boxes (cx, cy, rx, ry) [F, 4] in pixels for frames x [3, F, H, W];
  rows of the boxes are NaN where no face is found."""
  _, num, _, _ = x.shape
  border = np.concatenate([x[:, :, :2].reshape(3, num, -1), x[:, :, -2:].reshape(3, num, -1),
                           x[:, :, :, :2].reshape(3, num, -1), x[:, :, :, -2:].reshape(3, num, -1)], -1)
  background = np.median(border, axis=-1)  # [3, F]
  fg = _sq_dist(x, background) > _FG_DIST ** 2  # [F, H, W]
  # The face is most of the foreground, so its colour is the foreground's median.
  skin = np.stack([np.median(x[:, i][:, fg[i]], axis=-1) if fg[i].sum() >= 16 else np.full(3, np.nan)
                   for i in range(num)], -1)  # [3, F]
  # Within _SKIN_DIST of the skin, and nearer the skin than the backdrop, so a blurred outline
  # does not widen the box.
  near = np.minimum(_SKIN_DIST, 0.45 * np.sqrt(((skin - background) ** 2).sum(0)))  # [F]
  with np.errstate(invalid="ignore"):
    is_skin = _sq_dist(x, skin) < (near ** 2)[:, None, None]  # [F, H, W]
  count = is_skin.sum((1, 2))
  skin = np.einsum("cfhw,fhw->cf", x, is_skin.astype(np.float32)) / np.maximum(count, 1)
  boxes = np.full((num, 4), np.nan)
  rows, cols = is_skin.sum(2), is_skin.sum(1)  # [F, H], [F, W]
  for i in range(num):
    r, c = _extent(rows[i]), _extent(cols[i])
    if count[i] < 16 or r is None or c is None or r[1] - r[0] < 4 or c[1] - c[0] < 4:
      continue
    boxes[i] = ((c[0] + c[1]) / 2, (r[0] + r[1]) / 2, (c[1] - c[0]) / 2, (r[1] - r[0]) / 2)
  return skin, boxes


def mouth_opening(frames) -> np.ndarray:
  """Mouth opening of a synthetic face per frame, float64 [F] (a scalar for one [H, W, 3] frame).

  ``frames``: uint8 [F, H, W, 3] in [0, 255] or floating in [-1, 1] (the package's convention), one
  clip of one face (the face size is estimated over the clip). The value is the mouth's dark mass
  per face area: 0 for no dark pixels, growing linearly with the drawn opening; frames where no
  face is found are NaN.
  """
  single = np.ndim(frames) == 3
  x = np.ascontiguousarray(to_rgb255(frames).transpose(3, 0, 1, 2))  # [3, F, H, W]
  _, num, height, width = x.shape
  skin, boxes = _locate_faces(x)
  ok = np.isfinite(boxes[:, 0])
  out = np.full(num, np.nan)
  if ok.any():
    # One face size per clip: the face does not change size, and a per-frame estimate would jitter
    # the normalisation by a pixel's worth.
    rx, ry = np.median(boxes[ok, 2]), np.median(boxes[ok, 3])
    cx, cy = boxes[ok, 0, None, None], boxes[ok, 1, None, None]  # [F_ok, 1, 1]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5  # pixel centres, [H, W]
    window = (((xx - cx) / (_WINDOW_RU * rx)) ** 2
              + ((yy - cy - _WINDOW_V * ry) / (_WINDOW_RV * ry)) ** 2) <= 1  # [F_ok, H, W]
    luma = np.einsum("c,cfhw->fhw", _LUMA, x[:, ok])  # [F_ok, H, W]
    ref = np.maximum(_LUMA @ skin[:, ok], 1.0)  # [F_ok]
    out[ok] = ((ref[:, None, None] - luma) * window).sum((1, 2)) / ref / (rx * ry)
  return out[0] if single else out
