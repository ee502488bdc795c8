"""Image and video I/O for generation (docs/design.md §3.9): the reference portrait in, the talking-head mp4 out.

* :func:`load_reference_image` — any size, aspect and mode (RGB, RGBA, P, L, LA, I;16, I, F, CMYK)
  → a face-centred square crop resized to the model's resolution, float32 [size, size, 3] in [−1, 1].
  The face box comes from a pluggable detector (default: OpenCV's bundled frontal-face Haar cascade);
  with no face (or no cascade file) the centre square is used and a warning says so.
  Sizes are checked from the header before decoding (16 px to 100 megapixels); an animation gives its
  first frame and a warning.
* :class:`VideoWriter` — frames are streamed to imageio-ffmpeg's H.264 writer as they come (never all
  held at once) into a temp file next to the output; on close the speech is muxed in as AAC, cut or
  padded to the video's exact length (every frame written is in the file, and counted), with the ffmpeg
  binary imageio-ffmpeg ships, and the result is renamed into place (:func:`read_jax.files.atomic_path`),
  so an existing output is never left half-written and the new one gets the user's usual mode.
* :func:`check_image`, :func:`check_output_path` — the cheap checks a command makes before loading a
  model. Bad inputs raise :class:`MediaError` naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import warnings
import wave as wave_module
from collections.abc import Callable, Sequence

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from read_jax import audio as audio_lib
from read_jax.audio import ffmpeg_exe  # re-exported: read_jax.media.ffmpeg_exe
from read_jax.errors import MediaError  # re-exported: read_jax.media.MediaError
from read_jax.files import atomic_path

Box = tuple[int, int, int, int]  # (x, y, w, h) in pixels
Detector = Callable[[np.ndarray], Sequence[Box]]  # gray uint8 [H, W] → face boxes

FACE_SCALE = 2.0  # crop side = FACE_SCALE · face box side: the face with hair, chin and some shoulder
MIN_IMAGE_SIDE = 16  # pixels: below this there is no face to see (the Haar cascade's smallest is 24)
MAX_IMAGE_PIXELS = 100_000_000  # a 10000×10000 photo; checked from the header, before any decoding
HAAR_FILE = "haarcascade_frontalface_default.xml"


# ---------------------------------------------------------------------------------------------
# Reference image


def haar_detector() -> Detector | None:
  """OpenCV's bundled frontal-face Haar cascade as a detector, or None when the cascade file is absent.

  (Some OpenCV wheels, e.g. opencv-python-headless 5.0, no longer ship ``cv2.data.haarcascades``.)
  """
  try:
    import cv2
  except ImportError:
    return None
  path = os.path.join(getattr(getattr(cv2, "data", None), "haarcascades", ""), HAAR_FILE)
  if not os.path.isfile(path):
    return None
  cascade = cv2.CascadeClassifier(path)
  if cascade.empty():
    return None

  def detect(gray: np.ndarray) -> list[Box]:
    min_side = max(24, min(gray.shape) // 10)
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    return [tuple(int(v) for v in f) for f in faces]

  return detect


def _regular_file(path) -> str:
  path = os.fspath(path)
  if not os.path.exists(path):
    raise MediaError(f"{path}: no such file")
  if not os.path.isfile(path):
    raise MediaError(f"{path}: not a regular file")
  return path


def _check_image_size(name: str, width: int, height: int) -> None:
  if min(width, height) < MIN_IMAGE_SIDE:
    raise MediaError(f"{name}: the image is {width}×{height}; a portrait needs at least "
                     f"{MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE} pixels")
  if width * height > MAX_IMAGE_PIXELS:
    raise MediaError(f"{name}: the image is {width}×{height} ({width * height / 1e6:.0f} megapixels), over the "
                     f"{MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel limit; downscale it first")


@contextlib.contextmanager
def _open_image(path: str):
  """PIL's lazy image (header read, pixels not decoded), its size checked; closed on exit."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below says more
      img = Image.open(path)
  except Image.DecompressionBombError as e:  # PIL's hard limit, hit before our check can see the size
    raise MediaError(f"{path}: the image is over the {MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel limit ({e}); "
                     "downscale it first") from None
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise MediaError(f"{path}: not a readable image ({e})") from None
  with img:
    _check_image_size(path, img.width, img.height)
    yield img


def check_image(path) -> tuple[int, int]:
  """(width, height) of a readable image file of a usable size, decoded once to be sure; raises
  :class:`MediaError` naming the file otherwise. Cheap: meant to reject a bad file before a model loads."""
  path = _regular_file(path)
  with _open_image(path) as img:
    _decode(img, path)
    return img.size


def _decode(img, path: str):
  try:
    img = ImageOps.exif_transpose(img)  # phone photos: apply the stored rotation
    img.load()
  except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt pixel data
    raise MediaError(f"{path}: not a readable image ({e})") from None
  return img


def _read_image(path_or_array) -> tuple[np.ndarray, str]:
  """Any image file or array → float32 [H, W, 3] in [0, 1] and a name for messages."""
  if isinstance(path_or_array, np.ndarray):
    return _array_to_rgb(path_or_array, "image array"), "image array"
  path = _regular_file(path_or_array)
  with _open_image(path) as img:
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
      warnings.warn(f"{path}: the file holds {frames} frames (an animation?); using the first", stacklevel=3)
    img = _decode(img, path)
    if img.mode in ("P", "PA", "LA", "CMYK", "YCbCr", "LAB", "HSV", "1", "RGBX", "RGBa", "La"):
      img = img.convert("RGBA" if ("A" in img.mode or "a" in img.mode or img.mode == "P") else "RGB")
    pixels = np.asarray(img)
  return _array_to_rgb(pixels, path), path


def _array_to_rgb(a: np.ndarray, name: str) -> np.ndarray:
  """uint8/uint16/int32/float [H, W] or [H, W, 1|3|4] → float32 [H, W, 3] in [0, 1]; alpha over white.

  In place where it can be: one float32 copy, no temporaries of its size (a 48-megapixel JPEG peaks at
  ~20 bytes a pixel in all, 0.97 GB, where dividing and clipping into new arrays took 1.4 GB).
  """
  if a.ndim == 2:
    a = a[..., None]
  if a.ndim != 3 or a.shape[-1] not in (1, 2, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
    raise MediaError(f"{name}: need an image [H, W] or [H, W, 1|2|3|4], got shape {a.shape}")
  if a.dtype == np.uint8:
    scale = 255.0
  elif a.dtype in (np.uint16, np.dtype(">u2"), np.dtype("<u2")):
    scale = 65535.0
  elif np.issubdtype(a.dtype, np.integer):  # PIL mode "I" (16-bit PNGs are often read as int32)
    scale = 65535.0 if a.max(initial=0) > 255 else 255.0
  elif np.issubdtype(a.dtype, np.floating) or a.dtype == bool:  # float images are taken to be in [0, 1]
    scale = 1.0
  else:
    raise MediaError(f"{name}: unsupported pixel type {a.dtype}")
  x = a.astype(np.float32)  # always a copy: the caller's array is never modified below
  if scale != 1.0:
    x /= np.float32(scale)  # divide (not multiply by 1/scale): bit-identical to the plain a / scale
  elif not np.isfinite(x).all():
    raise MediaError(f"{name}: the image holds NaN or inf pixels")
  _check_image_size(name, x.shape[1], x.shape[0])
  np.clip(x, 0.0, 1.0, out=x)
  if x.shape[-1] in (2, 4):  # composite the alpha channel over white (transparent portrait backgrounds)
    alpha = x[..., -1:]
    colour = x[..., :-1]
    colour *= alpha
    colour += 1.0 - alpha
    x = colour
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return x


def square_box(height: int, width: int, face: Box | None, scale: float = FACE_SCALE) -> Box:
  """The square crop (x0, y0, side, side): centred on the face, side = scale·face side, shifted to fit.

  Without a face: the largest centred square. A face crop larger than the image is centred on the
  face and reaches outside the image (padded by :func:`crop_square`).
  """
  if face is None:
    side = min(height, width)
    return ((width - side) // 2, (height - side) // 2, side, side)
  fx, fy, fw, fh = face
  side = max(1, int(round(scale * max(fw, fh))))
  cx, cy = fx + fw / 2.0, fy + fh / 2.0
  x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
  # Move the square inside the image where it fits, so the face is off-centre rather than padded.
  if side <= width:
    x0 = min(max(x0, 0), width - side)
  if side <= height:
    y0 = min(max(y0, 0), height - side)
  return (x0, y0, side, side)


def crop_square(image: np.ndarray, box: Box) -> np.ndarray:
  """image [H, W, 3] cropped to box; parts outside the image repeat the border pixels."""
  x0, y0, side, _ = box
  h, w = image.shape[:2]
  pad = ((max(0, -y0), max(0, y0 + side - h)), (max(0, -x0), max(0, x0 + side - w)), (0, 0))
  if any(p for pair in pad[:2] for p in pair):
    image = np.pad(image, pad, mode="edge")
    x0, y0 = x0 + pad[1][0], y0 + pad[0][0]
  return image[y0:y0 + side, x0:x0 + side]


_DEFAULT = object()


def load_reference_image(path_or_array, size: int, *, detector: Detector | None | object = _DEFAULT,
                         scale: float = FACE_SCALE) -> np.ndarray:
  """The reference portrait as float32 [size, size, 3] in [−1, 1], face-centred and square.

  Args:
    path_or_array: an image file (any format and mode PIL reads) or an array [H, W(, C)]: uint8,
      uint16 or float in [0, 1].
    size: the model's resolution (512 in the paper).
    detector: ``detector(gray uint8 [H, W]) -> [(x, y, w, h), ...]``; the largest box is used. Default:
      OpenCV's Haar cascade; None: always the centre crop.
    scale: crop side over face-box side.
  Warns (``UserWarning``) when no face is found or no detector is available (centre crop), and when
  the image was not square (so part of it was cut away).
  """
  if not isinstance(size, (int, np.integer)) or size < 1:
    raise ValueError(f"size: need a positive integer, got {size!r}")
  image, name = _read_image(path_or_array)  # [H, W, 3] in [0, 1]
  h, w = image.shape[:2]
  if detector is _DEFAULT:
    detector = haar_detector()
    if detector is None:
      warnings.warn(f"{name}: OpenCV's Haar face cascade is not installed; using the centre crop", stacklevel=2)
  face = None
  if detector is not None:
    gray = np.round(image @ np.float32([0.299, 0.587, 0.114]) * 255.0).astype(np.uint8)  # [H, W]
    boxes = [b for b in detector(gray) if b[2] > 0 and b[3] > 0]
    if boxes:
      face = max(boxes, key=lambda b: b[2] * b[3])
    else:
      warnings.warn(f"{name}: no face found; using the centre crop", stacklevel=2)
  if h != w:
    warnings.warn(f"{name}: the image is {w}×{h}, not square; cropping a square around the "
                  f"{'face' if face else 'centre'}", stacklevel=2)
  crop = crop_square(image, square_box(h, w, face, scale))
  out = _resize(crop, size)
  return (out * 2.0 - 1.0).astype(np.float32)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
  """float32 [s, s, 3] → [size, size, 3]: area averaging down (no aliasing), bicubic up."""
  import cv2

  if image.shape[0] == size:
    return image
  interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC
  out = cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=interp)
  return np.clip(out, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Video out


def to_uint8(frames) -> np.ndarray:
  """uint8 as is; floats are taken to be in [−1, 1] (the package's pixel range)."""
  frames = np.asarray(frames)
  if frames.dtype == np.uint8:
    return frames
  if not np.issubdtype(frames.dtype, np.floating):
    raise ValueError(f"frames: need uint8 or float in [-1, 1], got {frames.dtype}")
  return np.round((np.clip(frames, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def check_output_path(path) -> str:
  """The absolute path of an output file that can be created: its folder exists and a file can be made
  there (tried, not asked: ``os.access`` says yes to root on a read-only mount). Raises
  :class:`MediaError` naming the file otherwise; meant to fail before a long job rather than after it."""
  path = os.path.abspath(os.fspath(path))
  folder = os.path.dirname(path)
  if os.path.isdir(path):
    raise MediaError(f"{path}: is a directory, not a file name")
  if not os.path.isdir(folder):
    raise MediaError(f"{path}: the folder {folder} does not exist")
  try:
    fd, probe_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".check", dir=folder)
  except OSError as e:
    raise MediaError(f"{path}: the folder {folder} is not writable ({e.strerror})") from None
  os.close(fd)
  os.remove(probe_path)
  return path


class VideoWriter:
  """Stream frames into an H.264 mp4 and mux the speech in as AAC; the output appears atomically.

    with VideoWriter("out.mp4", fps=25, audio=(wave, 16000)) as out:
      for frames in decoded_clips:   # [n, H, W, 3] in [-1, 1] or uint8
        out.write(frames)

  ``audio`` is None, ``(wave [samples] or [samples, channels] float, sample_rate)`` or a media file
  path (its first audio stream). Frames go straight to ffmpeg, so memory does not grow with the video
  length. The file holds every frame written, and the audio is fitted to them exactly: both start at
  0, and the audio is cut or padded with silence to frames / fps seconds (never the video to the
  audio). The file gets the user's usual mode (umask). If the block raises — a bug, an interrupt, a
  full disk — the temp files are deleted and an existing output is left untouched.
  """

  def __init__(self, out_path, fps: float = 25, audio=None, *, quality: float = 8.0):
    if not (np.isfinite(fps) and fps > 0):
      raise ValueError(f"fps: need a positive number, got {fps!r}")
    self.out_path = check_output_path(out_path)
    self.fps = float(fps)
    self.quality = quality
    self._audio = self._check_audio(audio)
    self._tmp: list[str] = []
    self._writer = None
    self._closed = False
    self._frame_shape = None
    self.frames_written = 0
    self._video_tmp = self._temp(".video.mp4")

  def _temp(self, suffix: str) -> str:
    base = os.path.basename(self.out_path)
    try:
      fd, path = tempfile.mkstemp(prefix=f".{base}.", suffix=suffix, dir=os.path.dirname(self.out_path))
    except OSError as e:
      raise MediaError(f"{self.out_path}: cannot write next to the output ({e.strerror})") from None
    os.close(fd)
    self._tmp.append(path)
    return path

  @staticmethod
  def _check_audio(audio):
    if audio is None:
      return None
    if isinstance(audio, (str, os.PathLike)):
      path = os.fspath(audio)
      try:
        audio_lib.audio_info(path)  # exists, not empty, has an audio stream
      except audio_lib.AudioError as e:
        raise MediaError(str(e)) from None
      return path
    try:
      wave, sr = audio
    except (TypeError, ValueError):
      raise ValueError("audio: need None, a file path or (wave, sample_rate)") from None
    wave = np.asarray(wave, np.float32)
    if wave.ndim not in (1, 2) or wave.shape[0] == 0 or wave.size == 0:
      raise MediaError(f"audio: zero-length or malformed waveform, shape {wave.shape}")
    if not np.all(np.isfinite(wave)):
      raise MediaError("audio: the waveform holds NaN or inf samples")
    if not (isinstance(sr, (int, np.integer)) and sr > 0):
      raise ValueError(f"audio: need a positive integer sample rate, got {sr!r}")
    return wave, int(sr)

  def write(self, frames) -> None:
    """Append frames [n, H, W, 3] (or one [H, W, 3]), uint8 or float in [−1, 1]."""
    if self._closed:
      raise RuntimeError(f"{self.out_path}: the writer is closed")
    frames = to_uint8(frames)
    if frames.ndim == 3:
      frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
      raise ValueError(f"frames: need [n, H, W, 3], got shape {frames.shape}")
    if self._frame_shape is not None and frames.shape[1:] != self._frame_shape:
      raise ValueError(f"frames: shape {frames.shape[1:]} differs from the first frames' {self._frame_shape}")
    try:
      if self._writer is None:
        self._start(frames.shape[1:])
      for frame in frames:
        self._writer.send(np.ascontiguousarray(frame))
    except OSError as e:  # ffmpeg died: the disk is full, the folder went away, ...
      self.abort()
      raise self._write_error(e) from None
    self.frames_written += frames.shape[0]

  def _start(self, frame_shape) -> None:
    h, w = frame_shape[:2]
    writer = imageio_ffmpeg.write_frames(
      self._video_tmp, (w, h), fps=self.fps, codec="libx264", pix_fmt_out="yuv420p",
      quality=self.quality, macro_block_size=2, ffmpeg_log_level="error")
    with audio_lib.quiet_fork():  # imageio-ffmpeg starts ffmpeg with a preexec_fn: a real fork
      writer.send(None)
    self._writer, self._frame_shape = writer, tuple(frame_shape)

  def _write_error(self, e: OSError) -> MediaError:
    text = str(e).strip()
    reason = e.strerror or (text.splitlines()[0] if text else type(e).__name__)
    if "Broken pipe" in reason:  # imageio-ffmpeg's word for "the encoder exited"; ffmpeg said why on stderr
      reason = "the ffmpeg encoder stopped (disk full?); its own message is above"
    return MediaError(f"{self.out_path}: cannot write the video ({reason})")

  def close(self) -> None:
    """Finish the video, mux the audio, check every frame is there, and move the file into place."""
    if self._closed:
      return
    try:
      if self._writer is None:
        raise MediaError(f"{self.out_path}: no frames were written")
      writer, self._writer = self._writer, None
      writer.close()  # waits for the encoder (which does not report its exit code: _finish counts the frames)
      with atomic_path(self.out_path) as final:
        self._finish(final)
    except OSError as e:
      self.abort()
      raise self._write_error(e) from None
    except BaseException:
      self.abort()
      raise
    self._cleanup()
    self._closed = True

  def _finish(self, into: str) -> None:
    """Remux the encoded video into ``into`` (moov atom first), with the audio as AAC fitted to exactly
    frames / fps seconds, and check the frame count.

    ``-shortest`` would end the file at packet granularity and can drop the last video frames; instead the
    audio alone is padded with silence (``apad``) and cut (``atrim``) to the video's duration. The video
    stream is copied, and ffmpeg's count of copied frames must be the number written, so an encoder that
    died (a full disk) or a truncated temp file is an error, never a short video.
    """
    seconds = self.frames_written / self.fps
    inputs, audio_args, audio_path = ["-i", self._video_tmp], ["-an"], None
    if self._audio is not None:
      audio_path = self._audio
      if not isinstance(audio_path, str):
        wave, sr = self._audio
        audio_path = self._temp(".wav")
        write_wav(audio_path, wave[:int(np.ceil(seconds * sr))], sr)  # only what the video needs
      fit = f"asetpts=PTS-STARTPTS,apad=whole_dur={seconds!r},atrim=duration={seconds!r}"
      inputs += ["-i", audio_path]
      audio_args = ["-map", "1:a:0", "-af", fit, "-c:a", "aac", "-b:a", "128k"]
    cmd = [ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-nostats", "-progress", "pipe:1", *inputs,
           "-map", "0:v:0", "-c:v", "copy", *audio_args, "-movflags", "+faststart", "-f", "mp4", into]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
      lines = proc.stderr.strip().splitlines()
      what = "muxing the audio" + (f" {audio_path}" if isinstance(self._audio, str) else "")
      raise MediaError(f"{self.out_path}: {what if audio_path else 'finishing the video'} failed "
                       f"({lines[-1] if lines else f'ffmpeg exit code {proc.returncode}'})")
    counts = re.findall(r"^frame=(\d+)", proc.stdout, re.M)
    copied = int(counts[-1]) if counts else None
    if copied != self.frames_written:
      raise MediaError(f"{self.out_path}: the encoded video holds {copied} of the {self.frames_written} frames "
                       "written (the encoder stopped early: disk full?)")

  def abort(self) -> None:
    """Stop ffmpeg and delete the temp files; an existing output stays as it was."""
    if self._writer is not None:
      writer, self._writer = self._writer, None
      try:
        writer.close()
      except Exception:  # ffmpeg may already be dead; the temp file is removed either way
        pass
    self._cleanup()
    self._closed = True

  def _cleanup(self):
    for path in self._tmp:
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    self._tmp = []

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc_type is None:
      self.close()
    else:
      self.abort()
    return False

  def __del__(self):
    if not getattr(self, "_closed", True):
      self.abort()


def write_wav(path: str, wave: np.ndarray, sr: int) -> None:
  """float [samples(, channels)] in [−1, 1] → 16-bit PCM wav (stdlib only)."""
  wave = np.asarray(wave, np.float32)
  if wave.ndim == 1:
    wave = wave[:, None]
  pcm = np.round(np.clip(wave, -1.0, 1.0) * 32767.0).astype("<i2")
  with wave_module.open(path, "wb") as f:
    f.setnchannels(pcm.shape[1])
    f.setsampwidth(2)
    f.setframerate(sr)
    f.writeframes(pcm.tobytes())


def probe(path) -> dict:
  """Streams and durations of a media file, from the ffmpeg binary (decoding each stream to null).

  Returns ``{"video": codec or None, "audio": codec or None, "video_frames", "video_seconds",
  "audio_seconds", "fps"}``; missing streams give None.
  """
  path = _regular_file(path)
  exe = ffmpeg_exe()
  info = audio_lib.ffmpeg_streams(path)
  if "Invalid data" in info or "Stream #" not in info:
    raise MediaError(f"{path}: not a readable media file")
  video = re.search(r"Stream #\S+.*?: Video: (\w+)", info)
  audio = re.search(r"Stream #\S+.*?: Audio: (\w+)", info)
  fps = re.search(r"([\d.]+) fps", info)
  out = {"video": video and video.group(1), "audio": audio and audio.group(1),
         "fps": float(fps.group(1)) if fps else None, "video_frames": None, "video_seconds": None,
         "audio_seconds": None, "video_streams": len(re.findall(r": Video: ", info)),
         "audio_streams": len(re.findall(r": Audio: ", info))}

  def decoded(stream: str) -> str:
    return subprocess.run([exe, "-nostdin", "-hide_banner", "-nostats", "-stats_period", "100", "-progress", "pipe:1",
                           "-i", path, "-map", stream, "-f", "null", "-"], capture_output=True, text=True).stdout

  if video:
    log = decoded("0:v:0")
    frames = re.findall(r"frame=(\d+)", log)
    out["video_frames"] = int(frames[-1]) if frames else None
    if out["video_frames"] is not None and out["fps"]:
      out["video_seconds"] = out["video_frames"] / out["fps"]
  if audio:
    times = re.findall(r"out_time_us=(\d+)", decoded("0:a:0"))
    out["audio_seconds"] = int(times[-1]) / 1e6 if times else None
  return out
