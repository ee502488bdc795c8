"""A seeded synthetic talking-face set: speech-like audio and a drawn face that speaks it (docs/design.md §3.7).

Nothing is downloaded and everything follows from one integer seed, so the set feeds the demo
model, the tests and the lip-sync checks on any machine. Each clip has

  * audio, 16 kHz mono, one of two kinds (``speech=``):
    ``formant``: voiced syllables (harmonics of a speaker-dependent pitch contour, shaped by three
    formant resonances that move from vowel to vowel), pauses, consonant noise bursts and light
    breath noise; ``espeak``: real synthetic speech from espeak-ng in one of many languages and
    voices (:mod:`read_jax.data.espeak`; held-out voice pools keep whole languages and voices out of
    training); ``mixed``: either, half and half by seed;
  * video: a drawn face at 25 fps (skin/background/hair colours, face size and position vary per
    identity; eyes blink; the head sways a little) whose dark mouth opens with the audio envelope;
  * mouth: the ground-truth opening per frame in [0, 1]: the smoothed RMS of the audio around the
    frame's time, shifted by the identity's lead of at most one frame (the mouth usually moves a
    little before the sound it makes).

The mouth is a large, high-contrast feature (a near-black ellipse inside reddish lips) so that
``read_jax.eval.mouth_opening`` can still measure it on blurry, low-resolution generated video.

In memory: ``make_clip(seed, seconds, size)`` → :class:`SyntheticClip`; ``render_face`` draws one
frame (e.g. a reference image); ``write_clip`` writes mp4 (H.264 + AAC, like real data) + wav +
json track, each file atomically; ``write_set`` writes many (``scripts/make_synthetic.py``). Held-out
splits are seed ranges: :data:`SPLIT_OFFSETS`, :func:`split_seeds`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import os
import pathlib
import signal
import sys

import numpy as np
import tqdm

from read_jax import cli
from read_jax.constants import FPS, SAMPLE_RATE
from read_jax.data import espeak
from read_jax.data.paths import check_output_dir
from read_jax.errors import InputError
from read_jax.files import atomic_path

SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640: clips hold a whole number of frames, so audio and video agree

# Held-out splits are disjoint seed ranges; clip i of a split has seed ``offset + start + i``.
SPLIT_OFFSETS = {"train": 0, "val": 1_000_000, "test": 2_000_000}
SPEECH_KINDS = ("formant", "espeak", "mixed")

# Vowel formants F1-F3 in Hz for an adult male vocal tract (Peterson & Barney-like averages);
# a speaker's ``formant_scale`` (shorter tract → higher formants) multiplies them.
_VOWELS = np.array([
    [730, 1090, 2440],  # a
    [530, 1840, 2480],  # e
    [270, 2290, 3010],  # i
    [570, 840, 2410],  # o
    [300, 870, 2240],  # u
    [660, 1720, 2410],  # ae
    [500, 1500, 2500],  # schwa
], np.float64)
_BANDWIDTHS = np.array([80.0, 110.0, 160.0])  # formant bandwidths in Hz
# How open the jaw is for each vowel, relative: open vowels are louder and wider, as in speech.
_VOWEL_LOUDNESS = np.array([1.0, 0.8, 0.6, 0.85, 0.65, 0.95, 0.75])

_HAIR_PALETTE = np.array([[25, 20, 20], [70, 45, 30], [120, 80, 45], [205, 170, 105], [150, 60, 30],
                          [165, 165, 160]], np.float64)
_SKIN_DARK = np.array([100.0, 66.0, 48.0])
_SKIN_LIGHT = np.array([245.0, 212.0, 188.0])
_EYE_WHITE = (238.0, 236.0, 230.0)
_HARMONIC_CEILING = 5000.0  # Hz; harmonics above are dropped (weak in speech, and no aliasing)


@dataclasses.dataclass(frozen=True)
class Identity:
  """One speaker: how the face looks and moves and how the voice sounds. Lengths are fractions of
  the frame size (face geometry relative to the face radii), so one identity renders at any size."""
  # Colours, RGB in [0, 255].
  skin: tuple[float, float, float]  # face
  background: tuple[float, float, float]  # flat backdrop; far from the skin colour
  hair: tuple[float, float, float]  # hair (brows are a darker shade); far from the skin colour
  lips: tuple[float, float, float]  # lip ring around the mouth
  mouth_inside: tuple[float, float, float]  # near-black inside of the open mouth
  iris: tuple[float, float, float]  # iris colour
  # Face geometry.
  face_x: float  # face centre, fraction of frame width
  face_y: float  # face centre, fraction of frame height
  face_ry: float  # face half-height, fraction of frame size
  face_aspect: float  # face half-width / half-height
  hair_lift: float  # hair ellipse centre above the face centre, in face half-heights
  eye_dx: float  # eye centre offset from the midline, in face half-widths
  eye_y: float  # eye centre below the face centre (negative: above), in face half-heights
  mouth_y: float  # top of the upper lip below the face centre, in face half-heights
  mouth_width: float  # lip half-width, in face half-widths
  mouth_max: float  # inner mouth height when fully open, in face half-heights
  # Motion.
  head_amp: float  # head sway amplitude, fraction of frame size
  blink_rate: float  # blinks per second
  mouth_lead: float  # frames the mouth leads the sound (negative: lags); |lead| <= 1
  # Voice.
  f0: float  # mean pitch, Hz
  formant_scale: float  # vocal-tract scale on the vowel formants
  syllable_rate: float  # syllables per second while speaking
  pause_prob: float  # chance that a pause comes before a syllable
  breathiness: float  # aspiration noise level relative to the voice


@dataclasses.dataclass
class SyntheticClip:
  """One generated clip; ``F = round(seconds * fps)`` frames and ``F * 640`` audio samples."""
  audio: np.ndarray  # float32 [F * 640], 16 kHz mono, in [-1, 1]
  frames: np.ndarray  # uint8 [F, S, S, 3]
  mouth: np.ndarray  # float32 [F], ground-truth mouth opening in [0, 1]
  blink: np.ndarray  # float32 [F], eye closure in [0, 1]
  head: np.ndarray  # float32 [F, 2], head offset (x, y) as fractions of the frame size
  identity: Identity  # the speaker
  seed: int  # the seed it was made from
  voice: str = "formant"  # "formant", or the espeak-ng voice ("fr-fr+f3")
  fps: int = FPS
  sample_rate: int = SAMPLE_RATE


def split_seeds(split: str, num: int, start: int = 0) -> range:
  """Seeds of clips ``start .. start + num - 1`` of a split; splits never share a seed."""
  if split not in SPLIT_OFFSETS:
    raise InputError(f"--split {split!r}: not one of {sorted(SPLIT_OFFSETS)}")
  if num < 0 or start < 0 or start + num > 1_000_000:
    raise InputError(f"--seed {start} --num {num}: clips {start}..{start + num - 1} of split {split!r} leave its "
                     "1,000,000 seeds (0..999999)")
  return range(SPLIT_OFFSETS[split] + start, SPLIT_OFFSETS[split] + start + num)


# ----------------------------------------------------------------------------------------------
# Identities.


def _far_colour(rng, sample, others, min_dist):
  """A colour from ``sample(rng)`` at least ``min_dist`` (RGB Euclidean) from each of ``others``."""
  for _ in range(1000):
    c = np.clip(sample(rng), 0, 255)
    if all(np.linalg.norm(c - o) >= min_dist for o in others):
      return c
  raise RuntimeError("no colour far enough from the others")  # cannot happen for the ranges below


def make_identity(seed: int) -> Identity:
  """A random speaker, fully determined by ``seed``."""
  rng = np.random.default_rng([int(seed), 0])
  t = rng.uniform()
  skin = (1 - t) * _SKIN_DARK + t * _SKIN_LIGHT + rng.normal(0, 6, 3)
  skin = np.clip(skin, 0, 255)
  # The face must stand out from the backdrop and the hair, so mouth_opening can find it.
  background = _far_colour(rng, lambda r: r.uniform(0, 255, 3), [skin], 110)
  hair = _far_colour(rng, lambda r: _HAIR_PALETTE[r.integers(len(_HAIR_PALETTE))] + r.normal(0, 10, 3),
                     [skin], 80)
  lips = np.clip(skin * np.array([0.86, 0.58, 0.60]) * rng.uniform(0.8, 0.95) + [12, 0, 0], 0, 255)
  mouth_inside = np.clip(np.array([34.0, 9.0, 14.0]) * rng.uniform(0.5, 1.1), 0, 255)
  iris = np.clip(rng.choice(np.array([[60, 40, 25], [50, 90, 130], [70, 110, 70], [30, 25, 20]], np.float64))
                 + rng.normal(0, 8, 3), 0, 255)
  f0 = rng.uniform(90, 250)
  # Higher voices tend to come with shorter vocal tracts (children, women): tie the two loosely.
  formant_scale = float(np.clip(0.9 + 0.25 * (f0 - 90) / 160 + rng.normal(0, 0.04), 0.85, 1.25))
  tup = lambda a: tuple(float(x) for x in a)  # noqa: E731
  return Identity(
      skin=tup(skin), background=tup(background), hair=tup(hair), lips=tup(lips),
      mouth_inside=tup(mouth_inside), iris=tup(iris),
      face_x=rng.uniform(0.42, 0.58), face_y=rng.uniform(0.48, 0.54), face_ry=rng.uniform(0.28, 0.37),
      face_aspect=rng.uniform(0.72, 0.85), hair_lift=rng.uniform(0.08, 0.16),
      eye_dx=rng.uniform(0.36, 0.44), eye_y=rng.uniform(-0.22, -0.12),
      mouth_y=rng.uniform(0.32, 0.38), mouth_width=rng.uniform(0.34, 0.44), mouth_max=rng.uniform(0.24, 0.32),
      head_amp=rng.uniform(0.005, 0.025), blink_rate=rng.uniform(0.15, 0.5), mouth_lead=rng.uniform(-0.25, 1.0),
      f0=f0, formant_scale=formant_scale, syllable_rate=rng.uniform(3.0, 6.0), pause_prob=rng.uniform(0.08, 0.2),
      breathiness=rng.uniform(0.01, 0.05),
  )


# ----------------------------------------------------------------------------------------------
# Drawing. Ellipses are axis-aligned and anti-aliased by their exact vertical coverage along sample
# columns, so a drawn area is exactly linear in the vertical radius: the mouth's pixel area follows
# the opening with no quantisation steps, even at 64² (4 sample columns per pixel there, so that
# sub-pixel head motion does not wobble it either).


def _coverage(shape, cx, cy, rx, ry, sub=1, box=None):
  """Coverage of per-frame ellipses, centres (cx, cy) and radii (rx, ry) [F] in pixels, on frames
  of ``shape`` = (H, W). Pixel (i, j) covers [j, j+1] x [i, i+1].

  Returns ``((y0, y1, x0, x1), cov [F, y1-y0, x1-x0])`` on the union of the frames' boxes (or on
  ``box``), or None when nothing is inside the frame.
  """
  h, w = shape
  cx, cy, rx, ry = (np.asarray(v, np.float32).reshape(-1) for v in (cx, cy, rx, ry))
  if box is None:
    box = (max(int(math.floor((cy - ry).min())), 0), min(int(math.ceil((cy + ry).max())), h),
           max(int(math.floor((cx - rx).min())), 0), min(int(math.ceil((cx + rx).max())), w))
  y0, y1, x0, x1 = box
  if x0 >= x1 or y0 >= y1:
    return None
  offsets = (np.arange(sub, dtype=np.float32) + 0.5) / sub
  cols = np.arange(x0, x1, dtype=np.float32)[None, None] + offsets[None, :, None]  # [1, sub, W']
  u = (cols - cx[:, None, None]) / np.maximum(rx, 1e-6)[:, None, None]
  half = ry[:, None, None] * np.sqrt(np.clip(1 - u ** 2, 0, None))  # chord half-heights, [F, sub, W']
  rows = np.arange(y0, y1, dtype=np.float32)[None, :, None] - cy[:, None, None]  # [F, H', 1]
  # |[r, r+1] ∩ [cy-half, cy+half]| = clip(cy+half-r, 0, 1) - clip(cy-half-r, 0, 1), per sample column.
  cov = sum(np.clip(half[:, j, None] - rows, 0, 1) - np.clip(-half[:, j, None] - rows, 0, 1) for j in range(sub))
  return box, cov / sub  # [F, H', W']


def _blend(img, region, colour, alpha=1.0):
  """Paint ``colour`` [3] into ``img`` [3, F, H, W] (channels first: numpy's inner loops then run
  over pixels, not over 3 channels) with the coverage ``region``, times ``alpha`` (scalar or [F])."""
  if region is None:
    return
  (y0, y1, x0, x1), cov = region
  if np.ndim(alpha):
    cov = cov * np.asarray(alpha, np.float32)[:, None, None]
  elif alpha != 1.0:
    cov = cov * np.float32(alpha)
  for c in range(3):
    box = img[c, :, y0:y1, x0:x1]
    box += cov * (np.float32(colour[c]) - box)


def _render(identity: Identity, mouth_open, blink, head_offset, size: int) -> np.ndarray:
  """Draw frames, uint8 [F, size, size, 3], from per-frame mouth_open [F], blink [F], head_offset [F, 2].

  Each layer is drawn for all frames at once, so the cost is numpy work, not Python per frame.
  """
  idn = identity
  mouth_open = np.clip(np.asarray(mouth_open, np.float32).reshape(-1), 0, 1)
  blink = np.clip(np.asarray(blink, np.float32).reshape(-1), 0, 1)
  head_offset = np.asarray(head_offset, np.float32).reshape(-1, 2)
  num = len(mouth_open)
  if len(blink) != num or len(head_offset) != num:
    raise ValueError(f"mouth_open, blink and head_offset must have one entry per frame, got "
                     f"{len(mouth_open)}, {len(blink)}, {len(head_offset)}")
  shape = (size, size)
  img = np.empty((3, num, size, size), np.float32)
  img[:] = np.asarray(idn.background, np.float32)[:, None, None, None]
  ones = np.ones(num, np.float32)
  ry = idn.face_ry * size * ones
  rx = ry * idn.face_aspect
  cx = (idn.face_x + head_offset[:, 0]) * size
  cy = (idn.face_y + head_offset[:, 1]) * size
  # Hair behind the head: a slightly larger ellipse lifted so that only a cap and sides show.
  _blend(img, _coverage(shape, cx, cy - idn.hair_lift * ry, 1.1 * rx, 0.98 * ry), idn.hair)
  _blend(img, _coverage(shape, cx, cy, rx, ry), idn.skin)
  brow = 0.6 * np.asarray(idn.hair)
  for side in (-1, 1):
    ex, ey = cx + side * idn.eye_dx * rx, cy + idn.eye_y * ry
    _blend(img, _coverage(shape, ex, ey - 0.2 * ry, 0.2 * rx, 0.035 * ry), brow)
    # The eye's box (at full height) also holds the iris, which is clipped to the eye white.
    eye_box = _coverage(shape, ex, ey, 0.17 * rx, 0.085 * ry)
    if eye_box is not None:  # the lid closes the eye white from 1 (open) to 0 (blink)
      eye = _coverage(shape, ex, ey, 0.17 * rx, 0.085 * ry * (1 - blink), box=eye_box[0])
      iris = _coverage(shape, ex, ey, 0.075 * ry, 0.075 * ry, box=eye_box[0])
      _blend(img, eye, _EYE_WHITE)
      _blend(img, (eye[0], eye[1] * iris[1]), idn.iris)
    # The closed lid shows as a lash line.
    _blend(img, _coverage(shape, ex, ey, 0.17 * rx, 0.015 * ry), 0.5 * brow, alpha=blink)
  # A nose shadow, kept faint and well above the mouth.
  _blend(img, _coverage(shape, cx, cy + 0.06 * ry, 0.09 * rx, 0.05 * ry), 0.85 * np.asarray(idn.skin))
  # The mouth: the upper lip stays put and the jaw drops, so the opening grows downwards. Four
  # sample columns per pixel keep its area smooth under sub-pixel head motion.
  lip = 0.05 * ry
  inner_h = mouth_open * idn.mouth_max * ry
  my = cy + idn.mouth_y * ry + lip + inner_h / 2
  _blend(img, _coverage(shape, cx, my, idn.mouth_width * rx, inner_h / 2 + lip, sub=4), idn.lips)
  _blend(img, _coverage(shape, cx, my, 0.82 * idn.mouth_width * rx, inner_h / 2, sub=4), idn.mouth_inside)
  return np.clip(np.round(img), 0, 255).astype(np.uint8).transpose(1, 2, 3, 0).copy()  # [F, S, S, 3]


def render_face(identity: Identity, mouth_open: float = 0.0, blink: float = 0.0, head_offset=(0.0, 0.0),
                size: int = 128) -> np.ndarray:
  """Draw one frame, uint8 [size, size, 3] (e.g. a reference image of ``identity``).

  ``mouth_open`` and ``blink`` are in [0, 1] (0: closed mouth / open eyes); ``head_offset`` is
  the (x, y) shift of the head as fractions of the frame size.
  """
  _check_size(size)
  return _render(identity, [mouth_open], [blink], [head_offset], size)[0]


def _check_seconds(seconds):
  if (isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.integer, np.floating))
      or not math.isfinite(seconds) or round(seconds * FPS) < 1):
    raise InputError(f"--seconds {seconds!r}: must be a number giving at least one frame (>= 0.02)")


def _check_size(size):
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
    raise InputError(f"--size {size!r}: must be an integer >= 8 (pixels)")


# ----------------------------------------------------------------------------------------------
# Audio.


def _smooth(x, width):
  """Moving average along the last axis with edge padding (width in samples, odd)."""
  width = max(int(width) | 1, 1)
  pad = width // 2
  xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="edge")
  c = np.cumsum(xp, axis=-1)
  c = np.concatenate([np.zeros_like(c[..., :1]), c], axis=-1)
  return (c[..., width:] - c[..., :-width]) / width


def _speech(rng, idn: Identity, num_samples: int) -> np.ndarray:
  """Speech-like audio, float64 [num_samples]: voiced syllables with formants, pauses, noise."""
  sr = SAMPLE_RATE
  seconds = num_samples / sr
  ctrl = 200  # Hz, rate of the pitch/formant control tracks
  n_ctrl = int(math.ceil(seconds * ctrl)) + 2
  t_ctrl = np.arange(n_ctrl) / ctrl

  # Syllable schedule; between syllables the envelope falls to zero (a consonant closure).
  envelope = np.zeros(num_samples)
  semitones = np.zeros(n_ctrl)
  formants = np.tile(_VOWELS[6] * idn.formant_scale, (n_ctrl, 1))  # [n_ctrl, 3]
  consonant = np.zeros(num_samples)
  t = rng.uniform(0.05, 0.4)
  phrase_start = t
  while t < seconds:
    if rng.uniform() < idn.pause_prob:
      t += rng.uniform(0.15, 0.6)
      phrase_start = t  # pitch declination restarts after a pause
      continue
    dur = rng.uniform(0.7, 1.3) / idn.syllable_rate
    vowel = rng.integers(len(_VOWELS))
    amp = rng.uniform(0.55, 1.0) * _VOWEL_LOUDNESS[vowel]
    s0, s1 = int(t * sr), min(int((t + dur) * sr), num_samples)
    if s1 > s0:
      x = (np.arange(s1 - s0) + 0.5) / (s1 - s0 + 0.0)
      # Fast attack, slower decay: a warped raised sine.
      envelope[s0:s1] += amp * np.sin(np.pi * x ** 0.75) ** 1.5
    c0, c1 = int(t * ctrl), min(int((t + dur) * ctrl) + 1, n_ctrl)
    formants[c0:] = _VOWELS[vowel] * idn.formant_scale * rng.uniform(0.95, 1.05, 3)
    # Stress: a pitch accent on some syllables; declination through the phrase.
    accent = rng.uniform(1.0, 3.5) if rng.uniform() < 0.35 else 0.0
    centre = t + 0.4 * dur
    semitones += accent * np.exp(-((t_ctrl - centre) / (0.35 * dur)) ** 2)
    semitones[c0:c1] -= 1.5 * (t_ctrl[c0:c1] - phrase_start)
    if rng.uniform() < 0.4:  # a fricative or plosive burst leading into the syllable
      b1 = s0 + int(0.15 * (s1 - s0))
      b0 = max(b1 - int(rng.uniform(0.03, 0.08) * sr), 0)
      if b1 > b0:
        consonant[b0:b1] += rng.uniform(0.05, 0.15) * np.hanning(b1 - b0)
    t += dur * rng.uniform(1.0, 1.15)

  # Pitch: mean f0, accents and declination, plus slow jitter (about a third of a semitone).
  semitones += _smooth(rng.normal(0, 1.2, n_ctrl), 15)
  f0_ctrl = idn.f0 * 2 ** (_smooth(semitones[None], 9)[0] / 12)  # [n_ctrl]
  formants = _smooth(formants.T, 9)  # [3, n_ctrl]: ~45 ms formant transitions between vowels

  # Harmonic source with a -6 dB/octave tilt, each harmonic weighted by the cascade of formant
  # resonances |H(f)| = F^2 / sqrt((F^2 - f^2)^2 + (B f)^2) at its own frequency k*f0(t).
  k = np.arange(1, int(_HARMONIC_CEILING / f0_ctrl.min()) + 1)[:, None]  # [K, 1]
  fk = k * f0_ctrl[None]  # [K, n_ctrl]
  gain = 1.0 / k * (fk < _HARMONIC_CEILING)
  for i in range(3):
    f_res, bw = formants[i][None], _BANDWIDTHS[i]
    gain = gain * f_res ** 2 / np.sqrt((f_res ** 2 - fk ** 2) ** 2 + (bw * fk) ** 2)
  # Synthesis per 5 ms control block, gains interpolated linearly inside it; sin(k*phase) by the
  # Chebyshev recurrence sin((k+1)x) = 2 cos(x) sin(kx) - sin((k-1)x), so no transcendental per harmonic.
  block = sr // ctrl  # 80 samples
  n_blocks = -(-num_samples // block)
  t_samp = np.arange(n_blocks * block) / sr
  phase = 2 * np.pi * np.cumsum(np.interp(t_samp, t_ctrl, f0_ctrl)) / sr
  frac = (np.arange(block) / block)[None]  # [1, block]
  two_cos, s_prev, s_cur = 2 * np.cos(phase), np.zeros_like(phase), np.sin(phase)
  voiced = np.zeros((n_blocks, block))
  for i in range(gain.shape[0]):
    g0, g1 = gain[i, :n_blocks, None], gain[i, 1:n_blocks + 1, None]  # [n_blocks, 1]
    voiced += (g0 + (g1 - g0) * frac) * s_cur.reshape(n_blocks, block)
    s_prev, s_cur = s_cur, two_cos * s_cur - s_prev
  voiced = voiced.reshape(-1)[:num_samples]
  voiced /= np.sqrt(np.mean(voiced ** 2)) + 1e-12

  # Consonant bursts are high-passed noise (first difference); breath noise follows the voice.
  white = rng.normal(0, 1, num_samples + 1)
  hiss = np.diff(white) / math.sqrt(2)
  audio = envelope * (voiced + idn.breathiness * white[:num_samples]) + consonant * hiss
  audio += 0.002 * rng.normal(0, 1, num_samples)  # room noise floor
  return audio / (np.abs(audio).max() + 1e-12) * rng.uniform(0.35, 0.7)


def audio_envelope(audio: np.ndarray, num_frames: int, lead_frames: float = 0.0) -> np.ndarray:
  """Smoothed RMS of 16 kHz ``audio`` at each video frame's centre time, float64 [num_frames].

  The RMS is taken over a 50 ms Hann window centred at ``(f + 0.5 + lead_frames) / 25`` s, i.e.
  ``lead_frames`` > 0 looks ahead into the audio (a mouth that leads the sound).
  """
  audio = np.asarray(audio, np.float64)
  if audio.ndim != 1:
    raise ValueError(f"audio must be mono [N], got shape {audio.shape}")
  half = SAMPLE_RATE // 40  # 25 ms
  window = np.hanning(2 * half + 2)[1:-1]  # [2 * half], no zero taps
  centres = np.round((np.arange(num_frames) + 0.5 + lead_frames) * SAMPLES_PER_FRAME).astype(np.int64)
  padded = np.pad(audio, (half, half))
  idx = centres[:, None] + np.arange(2 * half)[None]  # [F, 2 * half] into padded
  idx = np.clip(idx, 0, len(padded) - 1)
  return np.sqrt((padded[idx] ** 2 * window).sum(-1) / window.sum())


def _mouth_track(audio, num_frames, lead_frames):
  """Ground-truth opening in [0, 1]: the envelope, floor removed, scaled so loud syllables open fully."""
  env = audio_envelope(audio, num_frames, lead_frames)
  ref = np.quantile(env, 0.95)
  if ref <= 0:
    return np.zeros(num_frames)
  floor = 0.05 * ref
  return np.clip((env - floor) / (ref - floor), 0, 1)


# ----------------------------------------------------------------------------------------------
# Motion and clips.


def _blinks(rng, idn: Identity, num_frames: int) -> np.ndarray:
  """Eye closure per frame: Poisson-timed blinks of 3-5 frames (close fast, open slower)."""
  out = np.zeros(num_frames)
  t = rng.exponential(1 / idn.blink_rate) * FPS
  while t < num_frames:
    shape = np.array([0.5, 1.0, 1.0, 0.6, 0.25])[: rng.integers(3, 6)]
    f0 = int(t)
    n = min(len(shape), num_frames - f0)
    out[f0:f0 + n] = np.maximum(out[f0:f0 + n], shape[:n])
    t += max(rng.exponential(1 / idn.blink_rate) * FPS, 8)
  return out


def _head_motion(rng, idn: Identity, num_frames: int) -> np.ndarray:
  """Head offset (x, y) per frame, [F, 2]: a few slow sinusoids (0.1-0.6 Hz), amplitude head_amp."""
  t = np.arange(num_frames) / FPS
  out = np.zeros((num_frames, 2))
  for axis in range(2):
    freqs = rng.uniform(0.1, 0.6, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    weights = rng.dirichlet(np.ones(3))
    out[:, axis] = idn.head_amp * (weights[None] * np.sin(2 * np.pi * freqs[None] * t[:, None] + phases)).sum(-1)
  return out


def default_voices(seed: int) -> str:
  """The espeak voice pool of a seed's split: held-out voices and languages for test seeds, else training's."""
  return "unseen" if seed >= SPLIT_OFFSETS["test"] else "train"


def check_speech(speech: str, voices: str | None = None) -> None:
  if speech not in SPEECH_KINDS:
    raise InputError(f"--speech {speech!r}: not one of {list(SPEECH_KINDS)}")
  if voices is not None:
    espeak.check_pool(voices)
  if speech != "formant":
    espeak.check_available()


def make_clip(seed: int, seconds: float, size: int = 128, identity: Identity | None = None, *,
              speech: str = "formant", voices: str | None = None) -> SyntheticClip:
  """A clip of ``round(seconds * 25)`` frames at ``size``² pixels, all from ``seed``.

  ``identity`` (default ``make_identity(seed)``) lets several clips share one speaker, e.g. a
  reference image drawn with :func:`render_face` from another clip of the same identity.
  ``speech``: :data:`SPEECH_KINDS`; ``voices``: the espeak pool (:data:`read_jax.data.espeak.POOLS`,
  default :func:`default_voices`). The face is drawn the same whatever the speech.
  """
  _check_seconds(seconds)
  _check_size(size)
  check_speech(speech, voices)
  idn = make_identity(seed) if identity is None else identity
  rng = np.random.default_rng([int(seed), 1])
  num_frames = int(round(seconds * FPS))
  if speech == "mixed":  # half and half, by a hash of the seed (not its parity: splits start at even seeds)
    speech = "espeak" if np.random.default_rng([int(seed), 3]).uniform() < 0.5 else "formant"
  if speech == "espeak":
    pool = voices or default_voices(seed)
    voice_rng = np.random.default_rng([int(seed), 2])
    voice = espeak.pick_voice(voice_rng, pool, idn.f0)
    audio = espeak.speech(voice_rng, num_frames * SAMPLES_PER_FRAME, voice, pool)
    voice_name = voice.name
  else:
    audio = _speech(rng, idn, num_frames * SAMPLES_PER_FRAME)
    voice_name = "formant"
  mouth = _mouth_track(audio, num_frames, idn.mouth_lead)
  blink = _blinks(rng, idn, num_frames)
  head = _head_motion(rng, idn, num_frames)
  frames = _render(idn, mouth, blink, head, size)
  return SyntheticClip(audio=audio.astype(np.float32), frames=frames, mouth=mouth.astype(np.float32),
                       blink=blink.astype(np.float32), head=head.astype(np.float32), identity=idn, seed=int(seed),
                       voice=voice_name)


# ----------------------------------------------------------------------------------------------
# Files.


def write_clip(clip: SyntheticClip, out_dir, name: str) -> tuple[str, str, str]:
  """Write ``name.mp4`` (H.264 yuv420p with the speech muxed in as AAC, like real data),
  ``name.wav`` (16-bit PCM) and ``name.json`` (mouth track, blink, head, identity, seed).

  Returns the three paths. Frame sizes must be even (yuv420p halves the chroma planes). Each file is
  written atomically (:func:`read_jax.files.atomic_path`), the json last: a clip whose three files are
  all there is complete, whatever interrupted an earlier run.
  """
  import imageio_ffmpeg
  import soundfile

  if not name or os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
    raise ValueError(f"write_clip: name {name!r} must be a plain file stem")
  frames = np.asarray(clip.frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f"write_clip {name!r}: frames must be uint8 [F, H, W, 3], got {frames.dtype} {frames.shape}")
  num_frames, height, width, _ = frames.shape
  if height % 2 or width % 2:
    raise InputError(f"write_clip {name!r}: frame size {height}x{width} must be even for yuv420p video")
  if len(clip.audio) != num_frames * clip.sample_rate // clip.fps:
    raise ValueError(f"write_clip {name!r}: {len(clip.audio)} audio samples do not match {num_frames} frames")
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  mp4, wav, track = (str(out / f"{name}{ext}") for ext in (".mp4", ".wav", ".json"))
  if os.path.exists(track):  # rewriting: the clip is incomplete until its new json lands
    os.remove(track)
  with atomic_path(wav) as tmp:
    soundfile.write(tmp, np.clip(clip.audio, -1, 1), clip.sample_rate, subtype="PCM_16")
  with atomic_path(mp4) as tmp:
    writer = imageio_ffmpeg.write_frames(
        tmp, (width, height), fps=clip.fps, codec="libx264", pix_fmt_out="yuv420p", quality=None,
        macro_block_size=2, ffmpeg_log_level="error", audio_path=wav, audio_codec="aac",
        # One encoder thread: synthetic clips are small, and write_set runs clips in parallel.
        output_params=["-crf", "17", "-preset", "veryfast", "-threads", "1", "-b:a", "96k"])
    writer.send(None)
    try:
      for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    finally:
      writer.close()  # ffmpeg finishes (or is stopped) before the temp file is renamed or removed
  with atomic_path(track) as tmp:
    with open(tmp, "w") as fh:
      json.dump({"seed": clip.seed, "fps": clip.fps, "sample_rate": clip.sample_rate, "voice": clip.voice,
                 "num_frames": num_frames, "size": [height, width],
                 "mouth": [round(float(m), 5) for m in clip.mouth],
                 "blink": [round(float(b), 4) for b in clip.blink],
                 "head": [[round(float(v), 5) for v in h] for h in clip.head],
                 "identity": dataclasses.asdict(clip.identity)}, fh)
  return mp4, wav, track


def clip_name(seed: int) -> str:
  return f"synth_{seed:07d}"


def write_seed(seed: int, out_dir: str, seconds: float, size: int, overwrite: bool = False, *,
               speech: str = "formant", voices: str | None = None) -> str:
  """Write clip ``seed`` into ``out_dir`` unless its three files are there (or ``overwrite``); its name."""
  name = clip_name(seed)
  if overwrite or not all(os.path.exists(os.path.join(out_dir, name + ext)) for ext in (".mp4", ".wav", ".json")):
    write_clip(make_clip(seed, seconds, size, speech=speech, voices=voices), out_dir, name)
  return name


def _worker_signals() -> None:
  # Ctrl-C reaches every process of the group: the workers finish their clip (each file is atomic) while
  # the parent cancels the rest; SIGTERM stops a worker through its cleanups, without a traceback.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def write_set(out_dir: str, *, num: int = 100, seconds: float = 5.0, size: int = 128, seed: int = 0,
              split: str = "train", workers: int = 1, overwrite: bool = False, progress: bool = True,
              speech: str = "formant", voices: str | None = None) -> range:
  """Clips ``seed .. seed + num - 1`` of ``split`` into ``out_dir`` (``scripts/make_synthetic.py``); the seeds.

  Existing clips are kept unless ``overwrite``, so a rerun resumes. Every option is checked (an
  :class:`InputError` naming it) and the folder tried before any clip is drawn. On an interrupt the
  clips being written are finished and the rest cancelled.
  """
  if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
    raise InputError(f"--num {num!r}: must be >= 1")
  _check_seconds(seconds)
  _check_size(size)
  if size % 2:
    raise InputError(f"--size {size}: must be even (yuv420p video halves the chroma planes)")
  if workers < 1:
    raise InputError(f"--workers {workers}: must be >= 1")
  if seed < 0:
    raise InputError(f"--seed {seed}: must be >= 0 (the first clip index within the split)")
  check_speech(speech, voices)
  seeds = split_seeds(split, num, seed)
  out_dir = check_output_dir(out_dir)
  job = dict(out_dir=out_dir, seconds=seconds, size=size, overwrite=overwrite, speech=speech, voices=voices)
  bar = (cli.progress(total=len(seeds), desc=f"synthetic {split}", unit="clip") if progress
         else tqdm.tqdm(total=len(seeds), disable=True))
  with bar:
    if workers == 1:
      for s in seeds:
        bar.set_postfix_str(write_seed(s, **job))
        bar.update()
      return seeds
    pool = concurrent.futures.ProcessPoolExecutor(workers, initializer=_worker_signals)
    try:
      for future in concurrent.futures.as_completed([pool.submit(write_seed, s, **job) for s in seeds]):
        bar.set_postfix_str(future.result())
        bar.update()
    finally:
      pool.shutdown(wait=True, cancel_futures=True)
  return seeds
