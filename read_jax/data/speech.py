"""Audio files → Whisper features S [F, 10, 384] → ArrayRecord shards (the SpeechAE's training data).

Used by ``scripts/extract_speech.py``. Each readable file becomes one example
``{"speech": float16 [F, Hw, DA], "source": the file path}``; files are split into train / val by a
hash of their path (stable across reruns and machines). Files that cannot be read, or are shorter
than ``min_frames`` video frames, are skipped and listed, never silently dropped.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Iterable, Sequence

import numpy as np
import tqdm

from read_jax.data import records

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".webm")


def find_files(inputs: Sequence[str], extensions: tuple[str, ...]) -> list[str]:
  """Files given directly, plus files with one of ``extensions`` found recursively under given directories.

  A named file that does not exist is kept: the caller's loader reports it with the others that fail.
  """
  out = []
  for item in inputs:
    if os.path.isdir(item):
      for root, _, files in os.walk(item):
        out.extend(os.path.join(root, f) for f in files if f.lower().endswith(extensions))
    else:
      out.append(item)
  return sorted(out)


def list_audio(inputs: Sequence[str]) -> list[str]:
  """Audio files among ``inputs`` (files, or directories searched recursively)."""
  return find_files(inputs, AUDIO_EXTENSIONS)


def is_val(path: str, val_fraction: float) -> bool:
  digest = hashlib.sha256(os.path.abspath(path).encode()).digest()
  return int.from_bytes(digest[:8], "little") / 2**64 < val_fraction


def extract_speech(paths: Iterable[str], out_dir: str, featurize: Callable[[np.ndarray], np.ndarray], *,
                   load: Callable[[str], np.ndarray] | None = None, val_fraction: float = 0.05,
                   min_frames: int = 121, examples_per_shard: int = 256, progress: bool = True
                   ) -> dict[str, object]:
  """Write ``{out_dir}/{train,val}-NNNNN.array_record``; returns counts, shard paths and skipped files.

  ``featurize(wave) -> S [F, Hw, DA]`` (Whisper, in the script); ``load(path) -> wave`` defaults to
  :func:`read_jax.audio.load_audio`. A failure of either on one file (a ``ValueError``, such as
  ``AudioError``, or an ``OSError``) skips that file with its reason; ``skipped.txt`` lists them all.
  """
  if load is None:
    from read_jax.audio import load_audio as load
  if not 0 <= val_fraction < 1:
    raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
  paths = list(paths)
  os.makedirs(out_dir, exist_ok=True)
  writers = {split: records.ShardWriter(os.path.join(out_dir, split), examples_per_shard) for split in ("train", "val")}
  skipped: list[tuple[str, str]] = []
  try:
    for path in tqdm.tqdm(paths, desc="speech features", unit="file", disable=not progress):
      try:
        s = np.asarray(featurize(load(path)))
      except (ValueError, OSError) as e:
        skipped.append((path, f"{type(e).__name__}: {e}"))
        continue
      if s.ndim != 3:
        raise ValueError(f"featurize({path}) returned shape {s.shape}; expected [F, Hw, DA]")
      if s.shape[0] < min_frames:
        skipped.append((path, f"too short: {s.shape[0]} frames < min_frames={min_frames}"))
        continue
      if not np.all(np.isfinite(s)):
        skipped.append((path, "non-finite features"))
        continue
      writers["val" if is_val(path, val_fraction) else "train"].write(
          {"speech": s.astype(np.float16), "source": np.asarray(path)})
  finally:
    shards = {split: w.close() for split, w in writers.items()}
    with open(os.path.join(out_dir, "skipped.txt"), "w") as f:
      f.writelines(f"{p}\t{reason}\n" for p, reason in skipped)
  return {"train": writers["train"].count, "val": writers["val"].count, "shards": shards, "skipped": skipped}
