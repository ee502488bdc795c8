"""Fragmented MP4 (H.264 + AAC) one fragment per frame block, for a browser's MediaSource.

A live session hands out blocks of frames (:class:`read_jax.live.FrameBlock`) as soon as they are final; a
browser plays them through ``MediaSource`` when each arrives as a media segment of one fragmented MP4 stream:
an *init segment* (``ftyp`` + ``moov``, sent once) then one ``moof`` + ``mdat`` pair per block.

Each block is encoded by its own short ffmpeg run (the binary imageio-ffmpeg ships): the block's RGB frames on
stdin, its 16 kHz PCM from a wav in the session's temp folder, ``-movflags
frag_keyframe+empty_moov+default_base_moof`` and one GOP per block, so the output is exactly ``ftyp moov moof
mdat``. Why one run per block rather than one ffmpeg for the whole session: the mp4 muxer closes a fragment only
when the *next* keyframe arrives, so a long-lived encoder would hold block k back until block k + 1 is encoded —
a clip of latency for nothing. A run per block is complete when it exits (tens of ms on a CPU).

The runs are stitched into one stream by rewriting each fragment's ``tfdt`` (base media decode time) to where
the block starts — frame ``first_frame`` at 25 fps for video, the same instant in audio samples — and its
``mfhd`` sequence number. Every run uses the same settings and frame size, so the first run's init segment
describes all of them. AAC restarts per block with the encoder's priming (1024 samples at 48 kHz, 21 ms);
MediaSource replaces the overlapped samples, which can be heard as a faint click at block joins.
"""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
import wave as wave_module

import numpy as np

from read_jax import audio as audio_lib
from read_jax.errors import MediaError

AUDIO_RATE = 48_000  # Hz of the AAC track: 16 kHz AAC is legal but not every browser's MediaSource takes it
MIME = 'video/mp4; codecs="avc1.42E01E, mp4a.40.2"'  # H.264 Constrained Baseline 3.0 + AAC-LC


# ---------------------------------------------------------------------------------------------
# ISO BMFF boxes


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[str, int, int]]:
  """The boxes in ``data[start:end]`` as (type, offset, size); raises MediaError on a truncated box."""
  end = len(data) if end is None else end
  out, pos = [], start
  while pos < end:
    if end - pos < 8:
      raise MediaError(f"fmp4: truncated box header at byte {pos}")
    size, kind = struct.unpack(">I4s", data[pos:pos + 8])
    header = 8
    if size == 1:
      size, header = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
    elif size == 0:
      size = end - pos
    if size < header or pos + size > end:
      raise MediaError(f"fmp4: box {kind!r} at byte {pos} runs past the end ({size} bytes)")
    out.append((kind.decode("latin-1"), pos, size))
    pos += size
  return out


def _children(data: bytes, offset: int, size: int, full: bool = False) -> list[tuple[str, int, int]]:
  header = 16 if struct.unpack(">I", data[offset:offset + 4])[0] == 1 else 8
  return boxes(data, offset + header + (4 if full else 0), offset + size)


def _child(data, offset, size, kind):
  for k, o, s in _children(data, offset, size):
    if k == kind:
      return o, s
  raise MediaError(f"fmp4: no {kind} box inside the box at byte {offset}")


def timescales(init: bytes) -> dict[int, tuple[str, int]]:
  """track_ID → (handler "vide" | "soun", timescale) from an init segment's moov."""
  (moov,) = [(o, s) for k, o, s in boxes(init) if k == "moov"]
  out = {}
  for kind, o, s in _children(init, *moov):
    if kind != "trak":
      continue
    tkhd = _child(init, o, s, "tkhd")
    version = init[tkhd[0] + 8]
    track = struct.unpack(">I", init[tkhd[0] + 8 + (20 if version else 12):][:4])[0]
    mdia = _child(init, o, s, "mdia")
    mdhd = _child(init, *mdia, "mdhd")
    version = init[mdhd[0] + 8]
    scale = struct.unpack(">I", init[mdhd[0] + 8 + (20 if version else 12):][:4])[0]
    hdlr = _child(init, *mdia, "hdlr")
    handler = init[hdlr[0] + 16:hdlr[0] + 20].decode("latin-1")
    out[track] = (handler, scale)
  return out


def split(data: bytes) -> tuple[bytes, list[bytes]]:
  """(init segment ftyp+moov, [moof+mdat fragments]) of one fragmented-mp4 byte string."""
  init, frags, pending = b"", [], None
  for kind, o, s in boxes(data):
    if kind in ("ftyp", "moov"):
      init += data[o:o + s]
    elif kind == "moof":
      pending = o
    elif kind == "mdat" and pending is not None:
      frags.append(data[pending:o + s])
      pending = None
  if not init or not frags:
    raise MediaError("fmp4: ffmpeg's output has no init segment or no fragment")
  return init, frags


def retime(fragment: bytes, tracks: dict[int, tuple[str, int]], start_seconds: float, sequence: int) -> bytes:
  """``fragment`` (moof + mdat) with ``start_seconds`` added to every track's tfdt and mfhd set to ``sequence``."""
  out = bytearray(fragment)
  (moof,) = [(o, s) for k, o, s in boxes(fragment) if k == "moof"]
  for kind, o, s in _children(fragment, *moof):
    if kind == "mfhd":
      struct.pack_into(">I", out, o + 12, sequence)
    if kind != "traf":
      continue
    tfhd = _child(fragment, o, s, "tfhd")
    track = struct.unpack(">I", fragment[tfhd[0] + 12:tfhd[0] + 16])[0]
    _, scale = tracks[track]
    tfdt = _child(fragment, o, s, "tfdt")
    shift = round(start_seconds * scale)  # ffmpeg's own base (its start-up offset) kept, the block's start added
    fmt = ">Q" if fragment[tfdt[0] + 8] else ">I"  # tfdt version 1: 64-bit
    struct.pack_into(fmt, out, tfdt[0] + 12, struct.unpack_from(fmt, fragment, tfdt[0] + 12)[0] + shift)
  return bytes(out)


# ---------------------------------------------------------------------------------------------
# Encoder


def _write_wav(path: str, pcm: np.ndarray) -> None:
  with wave_module.open(path, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(audio_lib.SAMPLE_RATE)
    w.writeframes(np.asarray(pcm, "<i2").tobytes())


class FragmentEncoder:
  """One session's fMP4 stream: ``encode(frames, pcm, first_frame)`` → bytes to send for that block.

  The first call returns the init segment followed by the block's fragment (one binary message, so a client
  appends it to its SourceBuffer as is); later calls return the fragment only. ``pcm`` is the block's int16
  16 kHz audio (n · 640 samples for n frames at 25 fps; shorter is padded with silence). ``tmpdir`` holds one
  wav per block while ffmpeg runs and is the caller's to remove.
  """

  def __init__(self, fps: int, tmpdir: str, *, crf: int = 23):
    self.fps = fps
    self.tmpdir = tmpdir
    self.crf = crf
    self.init: bytes | None = None
    self._tracks = None
    self._sequence = 0
    self._shape = None

  def encode(self, frames: np.ndarray, pcm: np.ndarray, first_frame: int) -> bytes:
    frames = np.ascontiguousarray(frames, np.uint8)  # [n, H, W, 3]
    n, h, w, _ = frames.shape
    if self._shape is None:
      self._shape = (h, w)
    elif self._shape != (h, w):
      raise MediaError(f"fmp4: frame size {h}×{w} changed from {self._shape}")
    samples = round(n * audio_lib.SAMPLE_RATE / self.fps)
    pcm = np.asarray(pcm, np.int16)[:samples]
    pcm = np.pad(pcm, (0, samples - pcm.shape[0]))
    fd, wav = tempfile.mkstemp(suffix=".wav", dir=self.tmpdir)
    os.close(fd)
    try:
      _write_wav(wav, pcm)
      cmd = [audio_lib.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
             "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(self.fps), "-i", "pipe:0",
             "-i", wav,
             "-map", "0:v", "-map", "1:a",
             "-c:v", "libx264", "-profile:v", "baseline", "-level", "3.0", "-pix_fmt", "yuv420p",
             "-preset", "veryfast", "-tune", "zerolatency", "-crf", str(self.crf), "-g", str(n + 1), "-sc_threshold", "0",
             "-c:a", "aac", "-b:a", "64k", "-ar", str(AUDIO_RATE), "-ac", "1",
             "-frames:v", str(n), "-t", f"{n / self.fps:.6f}",
             "-avoid_negative_ts", "disabled",  # else the AAC priming shifts every video frame but the first
             "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "pipe:1"]
      with audio_lib.quiet_fork():
        result = subprocess.run(cmd, input=frames.tobytes(), capture_output=True, check=False)
    finally:
      os.remove(wav)
    if result.returncode != 0:
      message = result.stderr.decode(errors="replace").strip().splitlines()
      raise MediaError(f"fmp4: ffmpeg failed ({message[-1] if message else result.returncode})")
    init, frags = split(result.stdout)
    if len(frags) != 1:  # one GOP per block (-g, no scene cuts): anything else would need per-fragment times
      raise MediaError(f"fmp4: ffmpeg cut the block into {len(frags)} fragments, expected 1")
    first = self.init is None
    if first:
      self.init, self._tracks = init, timescales(init)
    self._sequence += 1
    out = retime(frags[0], self._tracks, first_frame / self.fps, self._sequence)
    return self.init + out if first else out
