"""Generate a test set the paper's way, for scoring (scripts/evaluate.py ``--ckpt``): every reference video is
regenerated from its own first frame (the portrait) and its own speech track.

  summary = generate_set(pipe, "test/", "gen/steps8/", steps=8, ckpt_id=ckpt_identity("assets/demo"))

``gen/steps8/<name>.mp4`` is written for each ``test/<name>.mp4`` (sorted by name), and ``gen/steps8/generation.json``
records the settings (checkpoint identity, steps, seed, ``max_seconds``) and per video the reference's hash and
the wall, denoiser and VAE-decoder seconds. The manifest is rewritten after each video, so an interrupted run
keeps what it finished; a rerun with the same settings skips every video whose output is there and whose
reference is unchanged, and reuses its recorded times. Before the first timed video one short warm-up clip
compiles the programs, so no video's time includes compilation (Fig. 3's wall seconds per clip).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np

from read_jax import audio as audio_lib
from read_jax import media
from read_jax.ans import sampling
from read_jax.convert import native
from read_jax.data.preprocess import SkipVideo, iter_frames
from read_jax.errors import AudioError, CheckpointError, InputError, MediaError
from read_jax.files import file_sha256, read_json, write_json
from read_jax.pipeline import PIPELINE_CONFIG, PipelineConfig, ReadPipeline

MANIFEST = "generation.json"
WARMUP_SECONDS = 1.0  # of the first reference's speech: enough for every per-clip program to compile


def checkpoint_settings(path: str) -> PipelineConfig:
  """The generation settings of a checkpoint directory from its ``pipeline.json`` (the defaults without one),
  read before any weight loads."""
  config_path = os.path.join(path, PIPELINE_CONFIG)
  return PipelineConfig.from_dict(read_json(config_path)) if os.path.isfile(config_path) else PipelineConfig()


def ckpt_identity(path: str) -> str:
  """A short hash of a checkpoint's ``pipeline.json`` and A2V-DiT weights: the manifest's key, so a retrained
  or reconfigured checkpoint regenerates its videos."""
  digest = hashlib.sha256()
  for part in (PIPELINE_CONFIG, os.path.join("a2v_dit", native.WEIGHTS_NAME)):
    file = os.path.join(path, part)
    digest.update(f"{part}={file_sha256(file) if os.path.isfile(file) else 'none'};".encode())
  return digest.hexdigest()[:16]


def reference_inputs(path: str, max_seconds: float | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(portrait uint8 [H, W, 3], speech float32 [n] at 16 kHz) of one reference video: its first frame and its
  own speech track, cut to the first ``max_seconds``; MediaError naming the file without either."""
  try:
    with contextlib.closing(iter_frames(path)) as frames:
      portrait = next(frames, None)
  except SkipVideo as e:
    raise MediaError(f"{path}: {e}") from None
  if portrait is None:
    raise MediaError(f"{path}: no video frames (its first frame is the portrait)")
  try:
    wave = audio_lib.load_audio(path)
  except AudioError as e:
    raise MediaError(f"{e}; a reference video drives its generation with its own speech track") from None
  if max_seconds is not None:
    wave = wave[:int(round(max_seconds * audio_lib.SAMPLE_RATE))]
  return portrait, wave


def _generate_one(pipe: ReadPipeline, source: str, source_sha256: str, out: str, tmp_dir: str, *, steps: int,
                  seed: int, max_seconds: float | None, warm: bool) -> dict:
  """Generate ``out`` from reference ``source`` (warming up first unless ``warm``); its manifest record."""
  portrait, wave = reference_inputs(source, max_seconds)
  if not warm:
    pipe.generate(portrait, wave[:int(WARMUP_SECONDS * audio_lib.SAMPLE_RATE)], steps=steps, seed=seed)
  audio_path = source
  if max_seconds is not None:  # the trimmed speech, as a file for write_video (which also muxes it in)
    os.makedirs(tmp_dir, exist_ok=True)
    fd, audio_path = tempfile.mkstemp(prefix=".speech.", suffix=".wav", dir=tmp_dir)
    os.close(fd)
  try:
    if max_seconds is not None:
      media.write_wav(audio_path, wave, audio_lib.SAMPLE_RATE)
    t0 = time.perf_counter()
    timings = pipe.write_video(portrait, audio_path, out, steps=steps, seed=seed)
    wall = time.perf_counter() - t0
  finally:
    if audio_path != source:
      os.remove(audio_path)
  num_video = int(round(timings.video_seconds * pipe.config.fps))
  clips = sampling.num_clips(sampling.latent_frames_for_video(num_video), pipe.config.clip_frames)
  return {"source_sha256": source_sha256, "wall_s": wall, "denoise_s": timings.denoise,
          "vae_decode_s": timings.vae_decode, "clips": clips, "video_s": timings.video_seconds}


def generate_set(pipe: ReadPipeline, reference_dir: str, out_dir: str, *, steps: int | None = None, seed: int = 0,
                 max_seconds: float | None = None, progress: Callable | None = None, ckpt_id: str = "",
                 log: Callable[[str], None] = print) -> dict:
  """Regenerate every ``*.mp4`` of ``reference_dir`` into ``out_dir`` (module docstring); the summary over all
  videos: counts, seconds of video, mean wall and denoiser seconds per clip, and the real-time factor.

  ``steps``: denoiser passes per clip (None: the pipeline's); ``max_seconds``: only the first seconds of each
  speech track; ``ckpt_id`` (:func:`ckpt_identity`): part of the settings a rerun must match to skip a video.
  ``progress(iterable, total=, desc=)`` wraps the loop over videos; ``log`` gets one line at the end."""
  if not os.path.isdir(reference_dir):
    raise InputError(f"{reference_dir}: no such folder")
  names = sorted(n for n in os.listdir(reference_dir) if n.lower().endswith(".mp4"))
  if not names:
    raise InputError(f"{reference_dir}: no .mp4 videos")
  steps = pipe.config.steps if steps is None else steps
  settings = {"ckpt": ckpt_id, "steps": steps, "seed": seed, "max_seconds": max_seconds}
  os.makedirs(out_dir, exist_ok=True)
  manifest_path, tmp_dir = os.path.join(out_dir, MANIFEST), os.path.join(out_dir, ".tmp")
  try:
    old = read_json(manifest_path) if os.path.isfile(manifest_path) else {}
  except CheckpointError:
    old = {}  # a damaged manifest: everything is generated again
  done = old.get("videos", {}) if all(old.get(k) == v for k, v in settings.items()) else {}
  stems = [os.path.splitext(n)[0] for n in names]
  videos = {stem: done[stem] for stem in stems if stem in done}  # kept while this run goes through them
  generated = 0
  wrap = progress or (lambda it, **kw: it)
  try:
    for name, stem in wrap(list(zip(names, stems)), total=len(names), desc=f"steps {steps}"):
      source, out = os.path.join(reference_dir, name), os.path.join(out_dir, stem + ".mp4")
      sha = file_sha256(source)
      if os.path.isfile(out) and videos.get(stem, {}).get("source_sha256") == sha:
        continue
      videos[stem] = _generate_one(pipe, source, sha, out, tmp_dir, steps=steps, seed=seed, max_seconds=max_seconds,
                                   warm=generated > 0)
      generated += 1
      write_json(manifest_path, {**settings, "videos": videos})
  finally:
    with contextlib.suppress(OSError):
      os.rmdir(tmp_dir)  # only when empty (it is, unless another run is writing there)
  write_json(manifest_path, {**settings, "videos": videos})  # drops references that are gone, even if none was new
  log(f"steps {steps}: generated {generated} of {len(names)} videos into {out_dir} ({len(names) - generated} "
      "up to date)")
  return _summary(videos)


def _summary(videos: dict) -> dict:
  """The totals of manifest records: per clip means are over all clips of all videos."""
  rows = list(videos.values())
  clips, video_s = sum(r["clips"] for r in rows), sum(r["video_s"] for r in rows)
  wall, denoise = sum(r["wall_s"] for r in rows), sum(r["denoise_s"] for r in rows)
  return {"videos": len(rows), "clips": clips, "video_s": video_s, "wall_s_per_clip": wall / clips,
          "denoise_s_per_clip": denoise / clips, "real_time_factor": wall / video_s}
