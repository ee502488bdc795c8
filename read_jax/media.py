"""Image and video I/O for generation (DESIGN §3.9): the reference portrait in, the talking-head mp4 out.

* :func:`load_reference_image` — any size, aspect and mode (RGB, RGBA, P, L, LA, I;16, I, F, CMYK)
  → a face-centred square crop resized to the model's resolution, float32 [size, size, 3] in [−1, 1].
  The face box comes from a pluggable detector (default: OpenCV's bundled frontal-face Haar cascade);
  with no face (or no cascade file) the centre square is used and a warning says so.
* :class:`VideoWriter` — frames are streamed to imageio-ffmpeg's H.264 writer as they come (never all
  held at once) into a temp file next to the output; on close the speech is muxed in as AAC with the
  ffmpeg binary imageio-ffmpeg ships, and the result is renamed into place (``os.replace``), so an
  existing output is never left half-written.
* Bad inputs raise :class:`MediaError` naming the file and the problem.
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

import numpy as np

from read_jax.errors import MediaError  # re-exported: read_jax.media.MediaError

Box = tuple[int, int, int, int]  # (x, y, w, h) in pixels
Detector = Callable[[np.ndarray], Sequence[Box]]  # gray uint8 [H, W] → face boxes

FACE_SCALE = 2.0  # crop side = FACE_SCALE · face box side: the face with hair, chin and some shoulder
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


def _read_image(path_or_array) -> tuple[np.ndarray, str]:
  """Any image file or array → float32 [H, W, 3] in [0, 1] and a name for messages."""
  if isinstance(path_or_array, np.ndarray):
    return _array_to_rgb(path_or_array, "image array"), "image array"
  path = os.fspath(path_or_array)
  if not os.path.exists(path):
    raise MediaError(f"{path}: no such file")
  if not os.path.isfile(path):
    raise MediaError(f"{path}: not a regular file")
  from PIL import Image, ImageOps, UnidentifiedImageError

  try:
    with Image.open(path) as img:
      img = ImageOps.exif_transpose(img)  # phone photos: apply the stored rotation
      img.load()
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise MediaError(f"{path}: not a readable image ({e})") from e
  if img.width == 0 or img.height == 0:
    raise MediaError(f"{path}: the image is empty ({img.width}×{img.height})")
  if img.mode in ("P", "PA", "LA", "CMYK", "YCbCr", "LAB", "HSV", "1", "RGBX", "RGBa", "La"):
    img = img.convert("RGBA" if ("A" in img.mode or "a" in img.mode or img.mode == "P") else "RGB")
  return _array_to_rgb(np.asarray(img), path), path


def _array_to_rgb(a: np.ndarray, name: str) -> np.ndarray:
  """uint8/uint16/int32/float [H, W] or [H, W, 1|3|4] → float32 [H, W, 3] in [0, 1]; alpha over white."""
  if a.ndim == 2:
    a = a[..., None]
  if a.ndim != 3 or a.shape[-1] not in (1, 2, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
    raise MediaError(f"{name}: need an image [H, W] or [H, W, 1|2|3|4], got shape {a.shape}")
  if a.dtype == np.uint8:
    x = a.astype(np.float32) / 255.0
  elif a.dtype in (np.uint16, np.dtype(">u2"), np.dtype("<u2")):
    x = a.astype(np.float32) / 65535.0
  elif np.issubdtype(a.dtype, np.integer):  # PIL mode "I" (16-bit PNGs are often read as int32)
    x = a.astype(np.float32) / (65535.0 if a.max(initial=0) > 255 else 255.0)
  elif np.issubdtype(a.dtype, np.floating):  # float images are taken to be in [0, 1]
    x = a.astype(np.float32)
  elif a.dtype == bool:
    x = a.astype(np.float32)
  else:
    raise MediaError(f"{name}: unsupported pixel type {a.dtype}")
  if not np.all(np.isfinite(x)):
    raise MediaError(f"{name}: the image holds NaN or inf pixels")
  x = np.clip(x, 0.0, 1.0)
  if x.shape[-1] in (2, 4):  # composite the alpha channel over white (transparent portrait backgrounds)
    alpha = x[..., -1:]
    x = x[..., :-1] * alpha + (1.0 - alpha)
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


@contextlib.contextmanager
def _spawning():
  """Silence JAX's "os.fork() was called" warning around starting ffmpeg: subprocess forks and execs
  at once, so none of the parent's threads or locks are used in the child."""
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="os.fork\\(\\) was called", category=RuntimeWarning)
    yield


def ffmpeg_exe() -> str:
  import imageio_ffmpeg

  return imageio_ffmpeg.get_ffmpeg_exe()


def to_uint8(frames) -> np.ndarray:
  """uint8 as is; floats are taken to be in [−1, 1] (the package's pixel range)."""
  frames = np.asarray(frames)
  if frames.dtype == np.uint8:
    return frames
  if not np.issubdtype(frames.dtype, np.floating):
    raise ValueError(f"frames: need uint8 or float in [-1, 1], got {frames.dtype}")
  return np.round((np.clip(frames, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


class VideoWriter:
  """Stream frames into an H.264 mp4 and mux the speech in as AAC; the output appears atomically.

    with VideoWriter("out.mp4", fps=25, audio=(wave, 16000)) as out:
      for frames in decoded_clips:   # [n, H, W, 3] in [-1, 1] or uint8
        out.write(frames)

  ``audio`` is None, ``(wave [samples] or [samples, channels] float, sample_rate)`` or an audio
  file path. Frames go straight to ffmpeg, so memory does not grow with the video length. Audio and
  video both start at 0; ``-shortest`` ends the file with the shorter stream, so a video trimmed to
  the audio's length keeps A/V in sync to within one frame. If the block raises, the temp files are
  deleted and an existing output is left untouched.
  """

  def __init__(self, out_path, fps: float = 25, audio=None, *, quality: float = 8.0):
    self.out_path = os.path.abspath(os.fspath(out_path))
    if not (np.isfinite(fps) and fps > 0):
      raise ValueError(f"fps: need a positive number, got {fps!r}")
    self.fps = float(fps)
    self.quality = quality
    out_dir = os.path.dirname(self.out_path)
    if os.path.isdir(self.out_path):
      raise MediaError(f"{self.out_path}: is a directory, not a file name")
    if not os.path.isdir(out_dir):
      raise MediaError(f"{self.out_path}: the folder {out_dir} does not exist")
    if not os.access(out_dir, os.W_OK):
      raise MediaError(f"{self.out_path}: the folder {out_dir} is not writable")
    self._audio = self._check_audio(audio)
    self._tmp: list[str] = []
    self._video_tmp = self._temp(".video.mp4")
    self._writer = None
    self._frame_shape = None
    self.frames_written = 0
    self._closed = False

  def _temp(self, suffix: str) -> str:
    base = os.path.basename(self.out_path)
    try:
      fd, path = tempfile.mkstemp(prefix=f".{base}.", suffix=suffix, dir=os.path.dirname(self.out_path))
    except OSError as e:
      raise MediaError(f"{self.out_path}: cannot write next to the output ({e})") from e
    os.close(fd)
    self._tmp.append(path)
    return path

  @staticmethod
  def _check_audio(audio):
    if audio is None:
      return None
    if isinstance(audio, (str, os.PathLike)):
      path = os.fspath(audio)
      if not os.path.isfile(path):
        raise MediaError(f"{path}: no such audio file")
      if os.path.getsize(path) == 0:
        raise MediaError(f"{path}: the audio file is empty")
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
    if self._writer is None:
      import imageio_ffmpeg

      self._frame_shape = frames.shape[1:]
      h, w = self._frame_shape[:2]
      self._writer = imageio_ffmpeg.write_frames(
        self._video_tmp, (w, h), fps=self.fps, codec="libx264", pix_fmt_out="yuv420p",
        quality=self.quality, macro_block_size=2, ffmpeg_log_level="error")
      with _spawning():
        self._writer.send(None)  # start ffmpeg
    elif frames.shape[1:] != self._frame_shape:
      raise ValueError(f"frames: shape {frames.shape[1:]} differs from the first frames' {self._frame_shape}")
    for frame in frames:
      self._writer.send(np.ascontiguousarray(frame))
    self.frames_written += frames.shape[0]

  def close(self) -> None:
    """Finish the video, mux the audio, and move the file into place."""
    if self._closed:
      return
    try:
      if self._writer is None:
        raise MediaError(f"{self.out_path}: no frames were written")
      self._writer.close()
      self._writer = None
      result = self._video_tmp
      if self._audio is not None:
        result = self._mux()
      os.replace(result, self.out_path)
    except BaseException:
      self.abort()
      raise
    self._cleanup()
    self._closed = True

  def _mux(self) -> str:
    audio_path = self._audio
    if not isinstance(audio_path, str):
      audio_path = self._temp(".wav")
      write_wav(audio_path, *self._audio)
    muxed = self._temp(".mp4")
    cmd = [ffmpeg_exe(), "-y", "-v", "error", "-i", self._video_tmp, "-i", audio_path,
           "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "128k",
           "-shortest", "-movflags", "+faststart", muxed]
    with _spawning():
      proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
      raise MediaError(f"{self.out_path}: muxing the audio {self._audio if isinstance(self._audio, str) else ''} "
                       f"failed: {proc.stderr.strip()[-500:]}")
    return muxed

  def abort(self) -> None:
    """Stop ffmpeg and delete the temp files; an existing output stays as it was."""
    if self._writer is not None:
      try:
        self._writer.close()
      except Exception:  # ffmpeg may already be dead; the temp file is removed either way
        pass
      self._writer = None
    self._cleanup()
    self._closed = True

  def _cleanup(self):
    for path in self._tmp:
      if os.path.exists(path):
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
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise MediaError(f"{path}: no such file")
  exe = ffmpeg_exe()
  with _spawning():
    info = subprocess.run([exe, "-hide_banner", "-i", path], capture_output=True, text=True).stderr
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
    with _spawning():
      return subprocess.run([exe, "-hide_banner", "-nostats", "-stats_period", "100", "-progress", "pipe:1",
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
