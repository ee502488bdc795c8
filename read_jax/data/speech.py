"""Audio files → Whisper features S [F, 10, 384] → ArrayRecord shards (the SpeechAE's training data).

Used by ``scripts/extract_speech.py``. Each readable file becomes one example
``{"speech": float16 [F, Hw, DA], "source": the file's absolute path}``; files are split into train / val
by a hash of their path (stable across reruns and machines). Files that cannot be read, or are shorter
than ``min_frames`` video frames, are skipped and listed (``skipped.txt``), never silently dropped.

Resume: a shard is written under ``OUT/.tmp/`` and renamed into place (``OUT/{train,val}-NNNNN.array_record``)
once full, then ``OUT/report.json`` (settings, each shard's sources, the skipped files and why) is
rewritten atomically. So the globs training reads never see a half-written shard, an interrupt loses at
most the examples of the shards still open, and a rerun skips every file the report lists (processed or
skipped, unless ``retry_skipped``), numbering its shards after the listed ones.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from typing import Callable, Iterable, Sequence

import numpy as np
import tqdm

from read_jax import cli
from read_jax.audio import load_audio
from read_jax.convert.speech_encoders import load_speech_encoder
from read_jax.data import records
from read_jax.data.paths import check_output_dir, find_files, usable_summary
from read_jax.errors import DataError, InputError
from read_jax.files import atomic_path, read_json, write_json
from read_jax.speech import speech_features, window_policy

__all__ = ["AUDIO_EXTENSIONS", "find_files", "list_audio", "is_val", "check_settings", "open_report",
           "extract_speech", "extract_speech_files"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".webm")
REPORT = "report.json"
SKIPPED = "skipped.txt"
_SHARD = re.compile(r"(train|val)-(\d{5})\.array_record")


def list_audio(inputs: Sequence[str]) -> list[str]:
  """Audio files among ``inputs`` (files, folders searched recursively, quoted globs); an error when an
  input does not exist or nothing is found (:func:`read_jax.data.paths.find_files`)."""
  return find_files(inputs, AUDIO_EXTENSIONS, kind="audio")


def is_val(path: str, val_fraction: float) -> bool:
  digest = hashlib.sha256(os.path.abspath(path).encode()).digest()
  return int.from_bytes(digest[:8], "little") / 2**64 < val_fraction


def check_settings(val_fraction: float, min_frames: int, examples_per_shard: int) -> dict:
  """The settings a rerun must share (as recorded in the report), checked; a bad one names its option."""
  if not 0 <= val_fraction < 1:
    raise InputError(f"--val_fraction {val_fraction}: must be in [0, 1)")
  if min_frames < 1:
    raise InputError(f"--min_frames {min_frames}: must be >= 1 (video frames)")
  if examples_per_shard < 1:
    raise InputError(f"--examples_per_shard {examples_per_shard}: must be >= 1")
  return {"val_fraction": val_fraction, "min_frames": min_frames}


def open_report(out_dir: str, settings: dict) -> dict:
  """The report of an earlier run into ``out_dir`` (or a new one); an error if it cannot be resumed.

  Shards the report lists whose file is gone are dropped from it, so their sources are redone.
  """
  path = os.path.join(out_dir, REPORT)
  if not os.path.exists(path):
    shards = sorted(f for f in (os.listdir(out_dir) if os.path.isdir(out_dir) else ()) if _SHARD.fullmatch(f))
    if shards:
      raise DataError(f"{out_dir}: holds shards ({shards[0]}, ...) but no {REPORT} to resume from; "
                      "use another output folder or move them away")
    return {"settings": settings, "shards": {}, "skipped": {}}
  try:
    report = read_json(path)
  except InputError as e:
    raise DataError(f"{e}; move it away to start over") from None
  if not all(isinstance(report.get(k), dict) for k in ("settings", "shards", "skipped")):
    raise DataError(f"{path}: not an extract_speech report (needs 'settings', 'shards' and 'skipped' objects)")
  if report["settings"] != settings:
    raise DataError(f"{path}: written with {report['settings']}, now {settings}; use another output folder")
  report["shards"] = {name: s for name, s in report["shards"].items() if os.path.isfile(os.path.join(out_dir, name))}
  return report


def _write_report(out_dir: str, report: dict) -> None:
  write_json(os.path.join(out_dir, REPORT), report)
  with atomic_path(os.path.join(out_dir, SKIPPED)) as tmp:
    with open(tmp, "w") as f:
      f.writelines(f"{p}\t{reason}\n" for p, reason in report["skipped"].items())


class _Shards:
  """One open shard per split under ``OUT/.tmp``; a full one is renamed into place and the report rewritten."""

  def __init__(self, out_dir: str, report: dict, examples_per_shard: int):
    self.out_dir, self.report, self.size = out_dir, report, examples_per_shard
    self.tmp = os.path.join(out_dir, ".tmp")
    self.open: dict[str, tuple[records.ShardWriter, str, list[str]]] = {}

  def _next_name(self, split: str) -> str:
    # The first index the report does not list: a shard that landed without its report entry (an
    # interrupt between the two) is overwritten by its redo, never duplicated.
    taken = {int(m.group(2)) for m in map(_SHARD.fullmatch, self.report["shards"]) if m and m.group(1) == split}
    k = next(i for i in range(len(taken) + 1) if i not in taken)
    return f"{split}-{k:05d}.array_record"

  def add(self, split: str, example: records.Example, source: str) -> None:
    if split not in self.open:
      name = self._next_name(split)
      os.makedirs(self.tmp, exist_ok=True)
      self.open[split] = (records.ShardWriter(os.path.join(self.tmp, name[:-len(".array_record")]), 10**9), name, [])
    writer, _, sources = self.open[split]
    writer.write(example)
    sources.append(source)
    if len(sources) == self.size:
      self.land(split)

  def land(self, split: str) -> None:
    writer, name, sources = self.open.pop(split)
    (written,) = writer.close()
    if not os.path.exists(os.path.join(self.out_dir, REPORT)):
      _write_report(self.out_dir, self.report)  # first: a landed shard is never without a report to resume from
    os.replace(written, os.path.join(self.out_dir, name))
    self.report["shards"][name] = {"split": split, "sources": sources}
    _write_report(self.out_dir, self.report)

  def land_all(self) -> None:
    for split in sorted(self.open):
      self.land(split)

  def discard(self) -> None:
    for writer, _, _ in self.open.values():
      writer.close()
    self.open.clear()
    shutil.rmtree(self.tmp, ignore_errors=True)


def extract_speech(paths: Iterable[str], out_dir: str, featurize: Callable[[np.ndarray], np.ndarray], *,
                   load: Callable[[str], np.ndarray] = load_audio, val_fraction: float = 0.05,
                   min_frames: int = 121, examples_per_shard: int = 256, retry_skipped: bool = False,
                   progress: bool = True) -> dict[str, object]:
  """Write ``{out_dir}/{train,val}-NNNNN.array_record`` (resuming an earlier run); returns the examples per
  split now in ``out_dir`` (``train``, ``val``), those written by this call (``written``), the shard paths
  and the skipped files with their reasons.

  ``featurize(wave) -> S [F, Hw, DA]`` (Whisper, in the script); ``load(path) -> wave`` defaults to
  :func:`read_jax.audio.load_audio`. A failure of either on one file (a ``ValueError``, such as
  ``AudioError``, or an ``OSError``) skips that file with its reason. When no file gives an example,
  nothing is written.
  """
  settings = check_settings(val_fraction, min_frames, examples_per_shard)
  report = open_report(out_dir, settings)
  resumed = os.path.exists(os.path.join(out_dir, REPORT))
  done = {s for shard in report["shards"].values() for s in shard["sources"]}
  paths = list(dict.fromkeys(os.path.abspath(p) for p in paths))
  todo = [p for p in paths if p not in done and (retry_skipped or p not in report["skipped"])]
  shards = _Shards(out_dir, report, examples_per_shard)
  written = 0
  bar = cli.progress(todo, desc="speech features", unit="file") if progress else tqdm.tqdm(todo, disable=True)
  try:
    for path in bar:
      try:
        s = np.asarray(featurize(load(path)))
      except (ValueError, OSError) as e:
        report["skipped"][path] = str(e) if isinstance(e, InputError) else f"{type(e).__name__}: {e}"
        continue
      if s.ndim != 3:
        raise ValueError(f"featurize({path}) returned shape {s.shape}; expected [F, Hw, DA]")
      if s.shape[0] < min_frames:
        report["skipped"][path] = f"too short: {s.shape[0]} frames < min_frames={min_frames}"
        continue
      if not np.all(np.isfinite(s)):
        report["skipped"][path] = "non-finite features"
        continue
      report["skipped"].pop(path, None)
      shards.add("val" if is_val(path, val_fraction) else "train", {"speech": s.astype(np.float16),
                                                                    "source": np.asarray(path)}, path)
      written += 1
    shards.land_all()
  finally:
    bar.close()
    shards.discard()  # what is still open after an error or an interrupt: never left as a shard
  if report["shards"] or resumed:
    _write_report(out_dir, report)
  out: dict[str, object] = {"written": written, "skipped": list(report["skipped"].items())}
  out["shards"] = {split: sorted(os.path.join(out_dir, n) for n, s in report["shards"].items() if s["split"] == split)
                   for split in ("train", "val")}
  for split in ("train", "val"):
    out[split] = sum(len(s["sources"]) for s in report["shards"].values() if s["split"] == split)
  return out


def extract_speech_files(inputs: Sequence[str], out_dir: str, speech_encoder: str, *, val_fraction: float = 0.05,
                         min_frames: int = 121, examples_per_shard: int = 256, retry_skipped: bool = False,
                         speech_window: str = "whole") -> dict[str, object]:
  """``scripts/extract_speech.py``: every check that needs no model (options, inputs, the output folder and
  its report) first, then the speech encoder (``speech_encoder``: its directory, any kind), then
  :func:`extract_speech`. No usable file at all is a
  :class:`DataError` listing the first reasons, with nothing written. ``speech_window``: the feature window
  policy (``read_jax.speech.window_policy``: "whole", "live", "live:<seconds>"); a model trained on these
  features must generate with the same ``PipelineConfig.speech_window``."""
  settings = check_settings(val_fraction, min_frames, examples_per_shard)
  policy = window_policy(speech_window)
  if policy is not None:  # recorded, so a rerun with another policy is refused (absent: "whole", as before)
    settings["speech_window"] = speech_window
  paths = list_audio(inputs)
  out_dir = check_output_dir(out_dir)
  open_report(out_dir, settings)
  encoder = load_speech_encoder(speech_encoder)
  result = extract_speech(paths, out_dir, lambda wave: speech_features(wave, encoder, policy=policy),
                          val_fraction=val_fraction, min_frames=min_frames, examples_per_shard=examples_per_shard,
                          retry_skipped=retry_skipped)
  if not result["train"] and not result["val"]:
    raise DataError(usable_summary(result["skipped"], "audio file"))
  return result
