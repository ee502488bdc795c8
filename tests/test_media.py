"""Reference-image loading (modes, crop geometry, fallbacks) and the streaming mp4 writer with audio."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from read_jax import media

FPS = 25


def coords_image(h, w):
  """uint8 [h, w, 3] whose pixels encode their own (row, col), so a crop can be located exactly."""
  r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  return np.stack([r % 256, c % 256, (r // 256) * 16 + c // 256], -1).astype(np.uint8)


def fixed_detector(*boxes):
  seen = []

  def detect(gray):
    seen.append(gray.shape)
    assert gray.dtype == np.uint8 and gray.ndim == 2
    return list(boxes)

  detect.seen = seen
  return detect


@pytest.mark.parametrize("mode,shape", [("RGB", (37, 53, 3)), ("RGBA", (41, 29, 4)), ("L", (31, 31)),
                                        ("I;16", (23, 47)), ("P", (19, 26))])
def test_image_modes(tmp_path, mode, shape):
  rng = np.random.default_rng(0)
  if mode == "I;16":
    img = Image.fromarray(rng.integers(0, 65536, shape, dtype=np.uint16))
  elif mode == "P":
    img = Image.fromarray(rng.integers(0, 256, shape + (3,), dtype=np.uint8)).convert("P")
  else:
    img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
  assert img.mode == mode
  path = tmp_path / f"ref_{mode.replace(';', '')}.png"
  img.save(path)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    out = media.load_reference_image(path, 17, detector=None)
  assert out.shape == (17, 17, 3) and out.dtype == np.float32
  assert out.min() >= -1.0 and out.max() <= 1.0 and out.std() > 0.05


def test_pixel_values_by_mode(tmp_path):
  """Constant images map to the right value in [-1, 1]: 16-bit scaling, grey to RGB, alpha over white."""
  cases = {
    "gray.png": (Image.fromarray(np.full((9, 9), 51, np.uint8)), 51 / 127.5 - 1),
    "deep.png": (Image.fromarray(np.full((9, 9), 16384, np.uint16)), 16384 / 65535 * 2 - 1),
    "clear.png": (Image.fromarray(np.zeros((9, 9, 4), np.uint8)), 1.0),  # fully transparent → white
  }
  for name, (img, want) in cases.items():
    img.save(tmp_path / name)
    out = media.load_reference_image(tmp_path / name, 5, detector=None)
    np.testing.assert_allclose(out, want, atol=2e-3, err_msg=name)
  arr = media.load_reference_image(np.full((6, 6, 3), 0.25, np.float32), 6, detector=None)
  np.testing.assert_allclose(arr, -0.5, atol=1e-6)


def test_face_crop_geometry():
  img = coords_image(100, 160)
  det = fixed_detector((100, 30, 20, 20), (5, 5, 4, 4))  # the largest box wins
  with pytest.warns(UserWarning, match="not square"):
    out = media.load_reference_image(img, 40, detector=det)
  assert det.seen == [(100, 160)]
  # side = 2·20 = 40 centred on (110, 40): rows 20…59, cols 90…129; no resize at size 40.
  np.testing.assert_array_equal(np.round((out + 1) * 127.5).astype(np.uint8), img[20:60, 90:130])


def test_face_crop_shifted_inside_and_padded():
  assert media.square_box(100, 160, (150, 90, 10, 10)) == (140, 80, 20, 20)  # pushed back inside
  assert media.square_box(50, 100, (40, 10, 40, 40)) == (20, -10, 80, 80)  # taller than the image: pads rows
  assert media.square_box(80, 50, (10, 30, 40, 40)) == (-10, 0, 80, 80)  # wider than the image: pads columns
  img = coords_image(50, 100).astype(np.float32)
  crop = media.crop_square(img, (20, -10, 80, 80))
  assert crop.shape == (80, 80, 3)
  np.testing.assert_array_equal(crop[10:60], img[:, 20:100])  # the image itself, unmoved
  np.testing.assert_array_equal(crop[:10], np.repeat(crop[10:11], 10, 0))  # edge rows repeated
  np.testing.assert_array_equal(crop[60:], np.repeat(crop[59:60], 20, 0))
  crop = media.crop_square(coords_image(80, 50), (-10, 0, 80, 80))
  np.testing.assert_array_equal(crop[:, :10], np.repeat(crop[:, 10:11], 10, 1))
  np.testing.assert_array_equal(crop[:, 60:], np.repeat(crop[:, 59:60], 20, 1))


def test_no_face_falls_back_to_centre_crop():
  img = coords_image(30, 50)
  with pytest.warns(UserWarning, match="no face found"), pytest.warns(UserWarning, match="not square"):
    out = media.load_reference_image(img, 30, detector=fixed_detector())
  np.testing.assert_array_equal(np.round((out + 1) * 127.5).astype(np.uint8), img[:, 10:40])


def test_default_detector():
  img = coords_image(40, 40)
  if media.haar_detector() is None:
    with pytest.warns(UserWarning, match="Haar"):
      out = media.load_reference_image(img, 8)
  else:
    with pytest.warns(UserWarning, match="no face found"):  # a coordinate ramp is no face
      out = media.load_reference_image(img, 8)
  assert out.shape == (8, 8, 3)


def test_bad_images_name_the_file(tmp_path):
  missing = tmp_path / "nope.png"
  with pytest.raises(media.MediaError, match="nope.png: no such file"):
    media.load_reference_image(missing, 8)
  garbage = tmp_path / "garbage.jpg"
  garbage.write_bytes(b"\x00not an image at all" * 10)
  with pytest.raises(media.MediaError, match="garbage.jpg: not a readable image"):
    media.load_reference_image(garbage, 8)
  with pytest.raises(media.MediaError, match="image array"):
    media.load_reference_image(np.zeros((4, 4, 5), np.uint8), 8)
  with pytest.raises(media.MediaError, match="NaN"):
    media.load_reference_image(np.full((4, 4), np.nan, np.float32), 8)


def tone(seconds, sr=16000):
  t = np.arange(int(round(seconds * sr))) / sr
  return (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)


def test_writer_streams_and_muxes_audio(tmp_path):
  out = tmp_path / "talk.mp4"
  seconds = 1.64  # 41 frames at 25 fps
  rng = np.random.default_rng(0)
  with media.VideoWriter(out, fps=FPS, audio=(tone(seconds), 16000)) as w:
    for n in (9, 8, 8, 8, 8):  # clip-sized pieces, float in [-1, 1]
      w.write(rng.uniform(-1, 1, (n, 32, 48, 3)).astype(np.float32))
  info = media.probe(out)
  assert (info["video_streams"], info["audio_streams"]) == (1, 1)
  assert (info["video"], info["audio"]) == ("h264", "aac")
  assert info["video_frames"] == 41 and info["fps"] == FPS
  assert abs(info["audio_seconds"] - seconds) <= 1 / FPS
  assert abs(info["audio_seconds"] - info["video_seconds"]) <= 1 / FPS
  assert sorted(os.listdir(tmp_path)) == ["talk.mp4"]  # no temp files left behind


def test_writer_audio_file_and_uint8(tmp_path):
  wav = tmp_path / "speech.wav"
  media.write_wav(str(wav), tone(0.8), 16000)
  out = tmp_path / "v.mp4"
  with media.VideoWriter(out, fps=FPS, audio=wav) as w:
    w.write(np.zeros((20, 16, 16, 3), np.uint8))
  info = media.probe(out)
  assert info["video_frames"] == 20 and abs(info["audio_seconds"] - 0.8) <= 1 / FPS


def test_failure_leaves_existing_output_untouched(tmp_path):
  out = tmp_path / "keep.mp4"
  out.write_bytes(b"previous video")
  with pytest.raises(RuntimeError, match="decoder blew up"):
    with media.VideoWriter(out, fps=FPS, audio=(tone(1.0), 16000)) as w:
      w.write(np.zeros((5, 16, 16, 3), np.uint8))
      raise RuntimeError("decoder blew up")
  assert out.read_bytes() == b"previous video"
  with pytest.raises(media.MediaError, match="no frames"):
    with media.VideoWriter(out, fps=FPS):
      pass
  assert out.read_bytes() == b"previous video"
  assert sorted(os.listdir(tmp_path)) == ["keep.mp4"]


def test_writer_bad_inputs(tmp_path):
  with pytest.raises(media.MediaError, match="does not exist"):
    media.VideoWriter(tmp_path / "no_dir" / "x.mp4")
  with pytest.raises(media.MediaError, match="zero-length"):
    media.VideoWriter(tmp_path / "x.mp4", audio=(np.zeros(0, np.float32), 16000))
  with pytest.raises(media.MediaError, match="missing.wav"):
    media.VideoWriter(tmp_path / "x.mp4", audio=tmp_path / "missing.wav")
  if os.geteuid() != 0:  # root can write anywhere
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(media.MediaError, match="not writable"):
      media.VideoWriter(ro / "x.mp4")
  with media.VideoWriter(tmp_path / "y.mp4") as w:
    w.write(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="differs"):
      w.write(np.zeros((1, 8, 10, 3), np.uint8))
  assert sorted(os.listdir(tmp_path)) == ["y.mp4"]
