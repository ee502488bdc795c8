"""Scores of generated talking heads (read_jax/eval/talking.py) on synthetic clips with known answers."""

import numpy as np
import pytest

from read_jax.data import synthetic
from read_jax.eval import talking


@pytest.fixture(scope="module")
def clip():
  return synthetic.make_clip(synthetic.split_seeds("test", 1, 7)[0], 4.0, 64)


def test_lip_sync_finds_the_lag_and_rejects_other_audio(clip):
  r, lag = talking.lip_sync_correlation(clip.frames, clip.mouth)
  assert r > 0.95 and lag == 0
  # Video one frame late: the best lag moves, the correlation stays.
  late = np.concatenate([clip.frames[:1], clip.frames[:-1]])
  r_late, lag_late = talking.lip_sync_correlation(late, clip.mouth)
  assert r_late > 0.9 and lag_late == 1
  other = synthetic.make_clip(synthetic.split_seeds("test", 1, 8)[0], 4.0, 64)
  assert abs(talking.lip_sync_correlation(clip.frames, other.mouth)[0]) < 0.4
  with pytest.raises(ValueError, match="mouth track"):
    talking.lip_sync_correlation(clip.frames, clip.mouth[:-1])


def test_face_colour_error_small_for_the_same_identity_large_for_another(clip):
  portrait = synthetic.render_face(clip.identity, size=64)
  same = talking.face_colour_error(clip.frames, portrait)
  other = synthetic.render_face(synthetic.make_identity(12345), size=64)
  assert same < 15.0
  assert talking.face_colour_error(np.repeat(other[None], 3, 0), portrait) > 3 * same
  with pytest.raises(ValueError, match="backdrop"):
    talking.face_colour_error(clip.frames, np.zeros((64, 64, 3), np.uint8))


def test_boundary_ratio_sees_a_jump():
  rng = np.random.default_rng(0)
  base = np.cumsum(rng.normal(0, 1, (40, 16, 16, 3)), axis=0) + 128  # a smooth random walk
  frames = np.clip(base, 0, 255).astype(np.uint8)
  smooth = talking.boundary_ratio(frames, [10, 20, 30])
  jumped = frames.copy()
  for b in (10, 20, 30):
    jumped[b:] = np.clip(jumped[b:].astype(int) + 40 * (1 if b % 20 else -1), 0, 255)
  assert 0.5 < smooth < 2.0
  assert talking.boundary_ratio(jumped, [10, 20, 30]) > 5 * smooth


def test_clip_boundaries_match_the_ans_layout():
  # Clips of f = 8 latent frames: clip 0 decodes to 57 frames, each later clip adds 56.
  assert talking.clip_boundaries(200, 8) == [57, 113, 169]
  assert talking.clip_boundaries(57, 8) == []


def test_silence_mask_keeps_long_pauses_only():
  mouth = np.full(60, 0.5)
  mouth[5:10] = 0.0  # 5 frames: a short gap between syllables, not a pause
  mouth[20:40] = 0.0  # 20 frames (0.8 s): a pause
  mask = talking.silence_mask(mouth)
  assert mask.sum() == 16 and mask[22:38].all() and not mask[:22].any() and not mask[38:].any()


def test_silence_scores_tell_a_closed_mouth_from_one_that_keeps_moving():
  seed = synthetic.split_seeds("test", 1, 3)[0]
  clip = synthetic.make_clip(seed, 4.0, 64)
  mouth = np.maximum(clip.mouth, 0.05)  # speech all through …
  mouth[30:60] = 0.0  # … but for a 1.2 s pause
  draw = lambda opening: np.stack([synthetic.render_face(clip.identity, m, b, h, size=64)  # noqa: E731
                                   for m, b, h in zip(opening, clip.blink, clip.head)])
  closed, moving = draw(mouth), draw(np.full(len(mouth), 0.6))
  good = talking.silence_scores(closed, closed, mouth)
  bad = talking.silence_scores(moving, closed, mouth)
  assert good["silence_frames"] == 26
  assert good["mouth_silence"] == pytest.approx(good["mouth_silence_truth"])
  assert good["mouth_silence"] < 0.5 * good["mouth_speech"]
  assert bad["mouth_silence"] > 2 * good["mouth_silence_truth_p95"]
