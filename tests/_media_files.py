"""Odd and broken media files for the media, audio and sample.py tests, each built in milliseconds."""

import os
import struct
import tempfile
import zlib

import numpy as np
import soundfile as sf
from PIL import Image

from read_jax import media

SR = 16000
FPS = 25


def tone(seconds, sr=SR, freq=330.0):
  t = np.arange(int(round(seconds * sr))) / sr
  return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def png_header_only(path, width, height):
  """A PNG whose header says width×height, followed by one row of pixels: what a decompression bomb
  looks like to a reader that checks the header first (one that decodes finds the data truncated)."""

  def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

  ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
  idat = zlib.compress(b"\0" * (width + 1))
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
  return path


def portrait(path, size=64):
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8)).save(path)
  return path


def nan_wav(path, seconds=0.5):
  wave = tone(seconds)
  wave[[3, 500]] = np.nan
  sf.write(path, wave, SR, subtype="FLOAT")
  return path


def video(path, frames=10, audio=None, size=32):
  """An H.264 mp4 of ``frames`` frames; ``audio`` as :class:`read_jax.media.VideoWriter` takes it."""
  rng = np.random.default_rng(frames)
  with media.VideoWriter(path, fps=FPS, audio=audio) as w:
    w.write(rng.integers(0, 256, (frames, size, size, 3), np.uint8))
  return path


def unwritable_folder(tmp_path):
  """A folder where this user cannot create a file, or None. Root writes through mode bits, so for root
  it is /sys (sysfs refuses new files), when that holds here."""
  if os.geteuid() != 0:
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    return str(folder)
  try:
    fd, path = tempfile.mkstemp(dir="/sys")
  except OSError:
    return "/sys"
  os.close(fd)
  os.remove(path)
  return None
