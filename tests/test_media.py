"""Reference-image loading (modes, crop geometry, fallbacks) and the streaming mp4 writer with audio."""

import concurrent.futures
import errno
import os
import stat
import warnings

import numpy as np
import pytest
from PIL import Image

import _media_files as files
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
    "gray.png": (Image.fromarray(np.full((17, 17), 51, np.uint8)), 51 / 127.5 - 1),
    "deep.png": (Image.fromarray(np.full((17, 17), 16384, np.uint16)), 16384 / 65535 * 2 - 1),
    "clear.png": (Image.fromarray(np.zeros((17, 17, 4), np.uint8)), 1.0),  # fully transparent → white
  }
  for name, (img, want) in cases.items():
    img.save(tmp_path / name)
    out = media.load_reference_image(tmp_path / name, 5, detector=None)
    np.testing.assert_allclose(out, want, atol=2e-3, err_msg=name)
  arr = media.load_reference_image(np.full((16, 16, 3), 0.25, np.float32), 6, detector=None)
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


# ---------------------------------------------------------------------------------------------
# Odd and broken images


def test_tiny_and_huge_images_are_refused_from_the_header(tmp_path):
  tiny = files.portrait(tmp_path / "tiny.png", size=1)
  with pytest.raises(media.MediaError, match=r"tiny.png: the image is 1×1; a portrait needs at least 16×16"):
    media.check_image(tiny)
  with pytest.raises(media.MediaError, match=r"1×1"):
    media.load_reference_image(tiny, 8)
  with pytest.raises(media.MediaError, match=r"image array: the image is 3×2"):
    media.load_reference_image(np.zeros((2, 3, 3), np.uint8), 8)
  # Past PIL's own bomb limit (20000² = 400 MP), and between ours and PIL's (12000×9000 = 108 MP): both are
  # refused before a pixel is decoded (the files hold one row of pixels; decoding would fail differently).
  for w, h in ((20000, 20000), (12000, 9000)):
    path = files.png_header_only(tmp_path / f"huge_{w}.png", w, h)
    for read in (media.check_image, lambda p: media.load_reference_image(p, 8)):
      with pytest.raises(media.MediaError, match=rf"huge_{w}.png: .*100-megapixel limit"):
        read(path)
  assert media.check_image(files.portrait(tmp_path / "ok.png", size=16)) == (16, 16)


def test_text_and_truncated_files_are_not_images(tmp_path):
  text = tmp_path / "notes.png"
  text.write_text("just some text\n")
  whole = files.portrait(tmp_path / "whole.png", size=64).read_bytes()
  cut = tmp_path / "cut.png"
  cut.write_bytes(whole[:len(whole) // 2])
  for path in (text, cut):
    with pytest.raises(media.MediaError, match=rf"{path.name}: not a readable image"):
      media.check_image(path)
    with pytest.raises(media.MediaError, match=rf"{path.name}: not a readable image"):
      media.load_reference_image(path, 8)


def test_cmyk_jpeg_and_16_bit_png_become_the_right_rgb(tmp_path):
  cv2 = pytest.importorskip("cv2")
  # CMYK (0, 255, 255, 0) is red, (255, 0, 255, 0) green; K = 128 is mid grey. JPEG blurs the edges only.
  cmyk = np.zeros((32, 48, 4), np.uint8)
  cmyk[:, :16] = (0, 255, 255, 0)
  cmyk[:, 16:32] = (255, 0, 255, 0)
  cmyk[:, 32:] = (0, 0, 0, 128)
  Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.jpg", quality=95)
  with pytest.warns(UserWarning, match="not square"):
    out = (media.load_reference_image(tmp_path / "cmyk.jpg", 32, detector=None) + 1) / 2  # centre 32×32 crop
  np.testing.assert_allclose(out[8:24, 2:6].mean((0, 1)), [1, 0, 0], atol=0.05)  # columns 8…15 of the image
  np.testing.assert_allclose(out[8:24, 10:14].mean((0, 1)), [0, 1, 0], atol=0.05)
  np.testing.assert_allclose(out[8:24, 26:30].mean((0, 1)), [127 / 255] * 3, atol=0.05)
  # 16-bit PNGs: grey (kept at 16 bits, so a dark image stays dark rather than read as 8-bit) and RGB.
  grey = np.full((20, 20), 200, np.uint16)
  grey[:, 10:] = 50000
  cv2.imwrite(str(tmp_path / "grey16.png"), grey)
  out = (media.load_reference_image(tmp_path / "grey16.png", 20, detector=None) + 1) / 2
  np.testing.assert_allclose(out[:, :10], 200 / 65535, atol=1e-6)
  np.testing.assert_allclose(out[:, 10:], 50000 / 65535, atol=1e-6)
  rgb = np.zeros((20, 20, 3), np.uint16)
  rgb[...] = (30000, 1000, 60000)  # BGR for cv2: blue 30000, green 1000, red 60000
  cv2.imwrite(str(tmp_path / "rgb16.png"), rgb)
  out = (media.load_reference_image(tmp_path / "rgb16.png", 20, detector=None) + 1) / 2
  np.testing.assert_allclose(out.mean((0, 1)), np.array([60000, 1000, 30000]) / 65535, atol=1 / 255)


def test_animated_gif_gives_its_first_frame_with_a_warning(tmp_path):
  frames = [Image.fromarray(np.full((24, 24, 3), v, np.uint8)) for v in (40, 200, 120)]
  frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
  with pytest.warns(UserWarning, match=r"anim.gif: the file holds 3 frames .*using the first"):
    out = media.load_reference_image(tmp_path / "anim.gif", 24, detector=None)
  np.testing.assert_allclose((out + 1) * 127.5, 40, atol=1.0)


# ---------------------------------------------------------------------------------------------
# Video out: every frame, exact A/V length, atomic, the user's file mode


@pytest.mark.slow
def test_every_frame_is_kept_with_two_writers_at_once(tmp_path):
  """Frame counts 1 … 121, no audio / audio shorter / longer than the video, as arrays and as files, two
  writers at a time: the file holds exactly the frames written, and its audio lasts exactly as long."""
  wav = {r: media.write_wav(str(tmp_path / f"a{r}.wav"), files.tone(r), files.SR) or tmp_path / f"a{r}.wav"
         for r in (0.3, 5.5)}
  jobs = []
  for n in (1, 2, 7, 20, 57, 121):
    seconds = n / FPS
    for kind in ("none", "short array", "long array", "short file", "long file"):
      audio = {"none": None, "short array": (files.tone(0.4 * seconds), files.SR),
               "long array": (files.tone(1.7 * seconds + 0.1), files.SR), "short file": wav[0.3],
               "long file": wav[5.5]}[kind]
      jobs.append((n, kind, audio, tmp_path / f"v{n}_{kind.replace(' ', '_')}.mp4"))

  def write(job):
    n, _, audio, out = job
    rng = np.random.default_rng(n)
    with media.VideoWriter(out, fps=FPS, audio=audio) as w:
      for start in range(0, n, 8):  # clip-sized pieces
        w.write(rng.integers(0, 256, (min(8, n - start), 16, 24, 3), np.uint8))
    return media.probe(out)

  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    infos = list(pool.map(write, jobs))
  for (n, kind, audio, _), info in zip(jobs, infos):
    assert info["video_frames"] == n, (n, kind, info)
    assert info["video_seconds"] == pytest.approx(n / FPS)
    if audio is None:
      assert info["audio"] is None, (n, kind, info)
    else:
      assert abs(info["audio_seconds"] - n / FPS) <= 1e-3, (n, kind, info)  # exact, not just within a frame
  assert sorted(os.listdir(tmp_path)) == sorted([p.name for p in wav.values()] + [j[3].name for j in jobs])


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_output_gets_the_users_file_mode(tmp_path, mask, mode):
  previous = os.umask(mask)
  try:
    for audio in (None, (files.tone(0.2), files.SR)):
      out = tmp_path / f"mode_{audio is None}.mp4"
      with media.VideoWriter(out, fps=FPS, audio=audio) as w:
        w.write(np.zeros((3, 16, 16, 3), np.uint8))
      assert stat.S_IMODE(os.stat(out).st_mode) == mode, oct(os.stat(out).st_mode)
  finally:
    os.umask(previous)


def _keep(tmp_path):
  out = tmp_path / "keep.mp4"
  out.write_bytes(b"previous video")
  return out


def _untouched(tmp_path, out):
  assert out.read_bytes() == b"previous video"
  assert sorted(os.listdir(tmp_path)) == ["keep.mp4"]


def test_interrupt_while_writing_leaves_existing_output_untouched(tmp_path):
  out = _keep(tmp_path)
  with pytest.raises(KeyboardInterrupt):
    with media.VideoWriter(out, fps=FPS, audio=(files.tone(1.0), files.SR)) as w:
      w.write(np.zeros((5, 16, 16, 3), np.uint8))
      raise KeyboardInterrupt
  _untouched(tmp_path, out)


def test_disk_full_while_encoding(tmp_path, monkeypatch):
  """ffmpeg's pipe breaks mid-video (the disk filled up): one MediaError naming the output, nothing left."""
  real = media.imageio_ffmpeg.write_frames

  def failing(path, *args, **kwargs):
    gen = real(path, *args, **kwargs)

    def frames():
      yield from _passing(gen, 3)
      raise OSError(errno.ENOSPC, "No space left on device")

    return frames()

  monkeypatch.setattr(media.imageio_ffmpeg, "write_frames", failing)
  out = _keep(tmp_path)
  with pytest.raises(media.MediaError, match=r"keep.mp4: cannot write the video \(No space left on device\)"):
    with media.VideoWriter(out, fps=FPS, audio=(files.tone(1.0), files.SR)) as w:
      for _ in range(6):
        w.write(np.zeros((1, 16, 16, 3), np.uint8))
  _untouched(tmp_path, out)


def _passing(gen, limit):
  """Stands in for imageio-ffmpeg's writer: the first ``limit`` frames reach the real one, ``gen``, which is
  then closed (a complete file of ``limit`` frames); returns when the next frame comes."""
  gen.send(None)  # start ffmpeg
  for _ in range(limit):
    gen.send((yield))
  gen.close()
  yield


def test_disk_full_while_muxing_and_renaming(tmp_path, monkeypatch):
  out = _keep(tmp_path)
  # ffmpeg writes half a file and fails, as it does when the disk fills while muxing.
  fake = tmp_path.parent / f"{tmp_path.name}_ffmpeg"
  fake.write_text("#!/bin/sh\nfor last; do :; done\nhead -c 1000 /dev/zero > \"$last\"\n"
                  "echo 'Error writing trailer: No space left on device' >&2\nexit 1\n")
  fake.chmod(0o755)
  with monkeypatch.context() as m:
    m.setattr(media, "ffmpeg_exe", lambda: str(fake))
    with pytest.raises(media.MediaError, match=r"keep.mp4: muxing the audio failed \(Error writing trailer: No space"):
      with media.VideoWriter(out, fps=FPS, audio=(files.tone(1.0), files.SR)) as w:
        w.write(np.zeros((5, 16, 16, 3), np.uint8))
  _untouched(tmp_path, out)

  real_replace = os.replace

  def replace(src, dst):
    if os.fspath(dst) == str(out):
      raise OSError(errno.ENOSPC, "No space left on device", str(src))
    real_replace(src, dst)

  monkeypatch.setattr(os, "replace", replace)
  with pytest.raises(media.MediaError, match=r"keep.mp4: cannot write the video \(No space left on device\)"):
    with media.VideoWriter(out, fps=FPS) as w:
      w.write(np.zeros((5, 16, 16, 3), np.uint8))
  _untouched(tmp_path, out)


def test_an_encoder_that_loses_frames_is_an_error(tmp_path, monkeypatch):
  """The encoder drops the last frames without a word (what a dying ffmpeg looks like to imageio, which
  never checks its exit code): the frame count at the end catches it."""
  real = media.imageio_ffmpeg.write_frames

  def dropping(*args, **kwargs):
    yield from _passing(real(*args, **kwargs), 4)
    while True:  # later frames vanish
      yield

  monkeypatch.setattr(media.imageio_ffmpeg, "write_frames", dropping)
  out = _keep(tmp_path)
  with pytest.raises(media.MediaError, match=r"keep.mp4: the encoded video holds 4 of the 9 frames"):
    with media.VideoWriter(out, fps=FPS) as w:
      for _ in range(9):
        w.write(np.zeros((1, 16, 16, 3), np.uint8))
  _untouched(tmp_path, out)


def test_output_folder_checks(tmp_path):
  with pytest.raises(media.MediaError, match=r"x.mp4: the folder .*no_dir does not exist"):
    media.check_output_path(tmp_path / "no_dir" / "x.mp4")
  with pytest.raises(media.MediaError, match=r"is a directory"):
    media.check_output_path(tmp_path)
  assert media.check_output_path(tmp_path / "x.mp4") == str(tmp_path / "x.mp4")
  assert os.listdir(tmp_path) == []  # the trial file is gone again
  folder = files.unwritable_folder(tmp_path)
  if folder is None:
    pytest.skip("no folder here refuses new files to this user")
  with pytest.raises(media.MediaError, match=rf"x.mp4: the folder {folder} is not writable"):
    media.check_output_path(os.path.join(folder, "x.mp4"))
