"""What clients upload, read with bounds: portraits (PNG, JPEG, WebP only, size from the header before any pixel
is decoded), audio files (plain containers, length checked on the decoded samples), and the multipart body of
``POST /v1/videos`` streamed with its size cap (nothing is spooled before the cap is checked).

Why so narrow: Pillow has some forty decoders (EPS runs Ghostscript where it is installed) and ffmpeg follows
playlists and concat lists to other files, and neither is needed for a face photo and a voice recording.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import AsyncIterator

import numpy as np
from PIL import Image, UnidentifiedImageError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from read_jax import audio as audio_lib
from read_jax import media
from read_jax.errors import AudioError, InputError, MediaError

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")  # Pillow's names: the decoders a portrait may use
MAX_FIELD_BYTES = 64  # a form field (steps, seed)


class UploadError(InputError):
  """An upload the server refuses; ``status`` is the HTTP answer (400, 413)."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


# ---------------------------------------------------------------------------------------------
# Portraits


def decode_portrait(data: bytes, what: str = "portrait", max_pixels: int = media.MAX_IMAGE_PIXELS) -> np.ndarray:
  """PNG, JPEG or WebP bytes → uint8 [H, W, 3]; a MediaError naming ``what`` otherwise.

  The size is read from the header and checked against ``max_pixels`` (and ``media.MIN_IMAGE_SIDE``) before the
  pixels are decoded, so a small file that claims 20,000² pixels costs nothing. Meant for a worker thread."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below says more
      img = Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS))
  except Image.DecompressionBombError:  # Pillow's own hard limit, met before ours can look at the size
    raise MediaError(f"{what}: the image is over the {max_pixels / 1e6:g}-megapixel limit") from None
  except UnidentifiedImageError:  # Pillow names only the file object: the formats say more
    raise MediaError(f"{what}: not a PNG, JPEG or WebP image") from None
  except (OSError, SyntaxError, ValueError) as e:
    raise MediaError(f"{what}: not a readable image ({_first_line(e)})") from None
  with img:
    width, height = img.size
    if width * height > max_pixels:
      raise MediaError(f"{what}: the image is {width}×{height}, over the {max_pixels / 1e6:g}-megapixel limit")
    if min(width, height) < media.MIN_IMAGE_SIDE:
      raise MediaError(f"{what}: the image is {width}×{height}; a portrait needs at least {media.MIN_IMAGE_SIDE}"
                       f"×{media.MIN_IMAGE_SIDE} pixels")
    try:
      rgb = img.convert("RGB")  # the first frame of an animation; alpha dropped: the page sends opaque photos
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:  # truncated or corrupt pixels
      raise MediaError(f"{what}: not a readable image ({_first_line(e)})") from None
    return np.asarray(rgb, np.uint8)  # [H, W, 3]


def image_mime(data: bytes) -> str:
  """The MIME type of PNG, JPEG or WebP bytes (what ``/v1/portrait`` answers with)."""
  if data[:8] == b"\x89PNG\r\n\x1a\n":
    return "image/png"
  if data[:3] == b"\xff\xd8\xff":
    return "image/jpeg"
  if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
    return "image/webp"
  return "application/octet-stream"


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return text[0][:120] if text else type(e).__name__


# ---------------------------------------------------------------------------------------------
# Audio files


def decode_audio(path: str, what: str, max_seconds: float, min_samples: int) -> np.ndarray:
  """An uploaded audio file → 16 kHz mono float32 [samples], decoding only plain containers
  (``audio.PLAIN_CONTAINERS``, local files only) and no longer than ``max_seconds``; UploadError otherwise.
  The file sits under a fixed name, so messages name ``what`` instead of the server's path."""
  try:
    wave = audio_lib.load_audio(path, containers=audio_lib.PLAIN_CONTAINERS, max_seconds=max_seconds)
  except AudioError as e:
    raise UploadError(str(e).replace(path, what)) from None
  if wave.size < min_samples:
    raise UploadError(f"{what}: {wave.size / audio_lib.SAMPLE_RATE:.3f} s of audio is shorter than one video frame")
  return wave


# ---------------------------------------------------------------------------------------------
# Multipart bodies


class Form:
  """The parts of a multipart body: files written or kept as their bytes arrive, fields as short strings."""

  def __init__(self, files: dict[str, str | None], max_file_bytes: int):
    self.files = files  # part name → path to write it to (None: keep the bytes in memory)
    self.max_file_bytes = max_file_bytes
    self.data: dict[str, bytearray] = {}  # in-memory files and fields
    self.sizes: dict[str, int] = {}
    self._handles: dict[str, object] = {}
    self._name: str | None = None
    self._header_field = bytearray()
    self._header_value = bytearray()
    self._disposition = ""

  # parser callbacks

  def on_part_begin(self):
    self._name, self._disposition = None, ""

  def on_header_field(self, data, start, end):
    self._header_field += data[start:end]

  def on_header_value(self, data, start, end):
    self._header_value += data[start:end]

  def on_header_end(self):
    if self._header_field.decode("latin-1").lower() == "content-disposition":
      self._disposition = self._header_value.decode("latin-1")
    self._header_field.clear()
    self._header_value.clear()

  def on_headers_finished(self):
    _, params = parse_options_header(self._disposition)
    name = params.get(b"name", b"").decode("latin-1")
    if not name:
      raise UploadError("a multipart part without a name")
    if name in self.sizes:
      raise UploadError(f"{_field_name(name)}: sent twice")
    if name not in self.files and name not in ("steps", "seed"):
      raise UploadError(f"unknown form field {_field_name(name)} (expected portrait, audio, steps, seed)")
    self._name = name
    self.sizes[name] = 0
    path = self.files.get(name)
    if path is not None:
      self._handles[name] = open(path, "wb")
    else:
      self.data[name] = bytearray()

  def on_part_data(self, data, start, end):
    name = self._name
    n = end - start
    self.sizes[name] += n
    limit = self.max_file_bytes if name in self.files else MAX_FIELD_BYTES
    if self.sizes[name] > limit:
      raise UploadError(f"{name}: over the {limit} byte limit", 413)
    handle = self._handles.get(name)
    if handle is not None:
      handle.write(data[start:end])
    else:
      self.data[name] += data[start:end]

  def on_part_end(self):
    handle = self._handles.pop(self._name, None)
    if handle is not None:
      handle.close()

  def close(self):
    for handle in self._handles.values():
      handle.close()
    self._handles.clear()

  def field(self, name: str) -> str | None:
    value = self.data.get(name)
    if value is None:
      return None
    try:
      return value.decode("ascii").strip()
    except UnicodeDecodeError:
      raise UploadError(f"{name}: not ASCII text") from None


def _field_name(name: str) -> str:
  return repr(name[:40])


async def read_form(chunks: AsyncIterator[bytes], content_type: str, form: Form, max_body_bytes: int) -> Form:
  """Stream a ``multipart/form-data`` body into ``form``, refusing it (413) once it passes ``max_body_bytes``."""
  kind, params = parse_options_header(content_type)
  boundary = params.get(b"boundary")
  if kind != b"multipart/form-data" or not boundary or not re.fullmatch(rb"[\x21-\x7e ]{1,70}", boundary):
    raise UploadError("need a multipart/form-data body with a boundary (fields portrait, audio, steps, seed)")
  callbacks = {name: getattr(form, name) for name in (
    "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished", "on_part_data",
    "on_part_end")}
  parser = MultipartParser(boundary, callbacks, max_size=max_body_bytes)
  total = 0
  try:
    async for chunk in chunks:
      total += len(chunk)
      if total > max_body_bytes:
        raise UploadError(f"the body is over the {max_body_bytes} byte limit", 413)
      parser.write(chunk)
    parser.finalize()
  except MultipartParseError as e:
    raise UploadError(f"a malformed multipart body ({_first_line(e)})") from None
  finally:
    form.close()
  return form


def fixed_paths(folder: str, names) -> dict[str, str]:
  """Where uploads go: one fixed name per part in the request's own folder, never a name the client chose (the
  client's file name and extension are ignored: ffmpeg and Pillow look at the bytes)."""
  return {name: os.path.join(folder, name) for name in names}
