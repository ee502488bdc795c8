"""Videos → stage-2 training shards (``scripts/preprocess.py``; format: read_jax/train/a2v_stage.py).

Per video (mp4/mov/mkv/webm/...):
  1. audio: the ffmpeg binary imageio-ffmpeg ships extracts the first audio track as 16 kHz mono wav
     (a video with no audio track is skipped);
  2. first pass over the frames, decoded at 25 fps: faces are detected on every ``detect_every``-th
     frame (pluggable detector, default OpenCV's Haar cascade) and the union of the boxes gives ONE
     fixed square crop for the whole video (a fixed crop keeps the head's own motion in the data);
     no face → skipped, or the centre crop with ``no_face="center"`` (recorded in the report);
  3. F = min(video frames, audio frames); clips of ``clip_frames`` (= 1 + 8k) frames start every
     ``stride`` frames; too short for one clip → skipped;
  4. Whisper features S [F, 10, D] of the whole audio, sliced per clip;
  5. second pass: frames are cropped, resized to ``resolution`` and streamed; each clip is VAE-encoded
     as soon as its last frame arrives, so only one clip's frames are held; each clip's reference
     frame z_R is a frame outside the clip (paper §3.3: the identity comes from elsewhere in the video,
     so the model cannot copy the first frame), chosen by a seed from the path.

One record per clip: ``latents`` float16 [1 + f, h, w, C] (z_R first, normalised VAE latents) and
``speech`` float16 [clip_frames, 10, D]. A video's clips go to one shard of its own,
``{train|val}-<hash of path>-00000.array_record``, written under ``OUT/.tmp/`` (removed on any error or
interrupt) and renamed into place; then ``report.json`` is rewritten atomically. So an interrupted run
leaves no half-written shard where training looks (a video whose shard landed but whose report entry did
not is redone into the same shard name, never duplicated), and a rerun skips every video the report lists
(processed with its shard present, or skipped) unless ``retry_skipped``. A run in which no video gives a
clip writes nothing (:func:`preprocess_videos` then fails with the reasons).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from typing import Callable, Iterable, Iterator, Sequence

import jax
import numpy as np
import tqdm

from read_jax import cli, media
from read_jax.audio import quiet_fork
from read_jax.constants import FPS, SAMPLE_RATE
from read_jax.convert import load_vae
from read_jax.convert.speech_encoders import load_speech_encoder, part_path
from read_jax.data import records
from read_jax.data.paths import check_output_dir, find_files, usable_summary
from read_jax.data.speech import is_val
from read_jax.errors import DataError, InputError
from read_jax.files import read_json, write_json
from read_jax.models.vae import to_pixels
from read_jax.speech import speech_features, window_policy

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
REPORT = "report.json"


class SkipVideo(Exception):
  """A video that cannot give training clips; the message is the reason written to the report."""


def list_videos(inputs: Sequence[str]) -> list[str]:
  """Video files among ``inputs`` (files, folders searched recursively, quoted globs), as absolute paths;
  an error when an input does not exist or nothing is found (:func:`read_jax.data.paths.find_files`)."""
  return sorted(os.path.abspath(p) for p in find_files(inputs, VIDEO_EXTENSIONS, kind="video"))


def check_clip_frames(clip_frames: int) -> int:
  """Number of latent frames f of a clip of ``clip_frames`` = 1 + 8(f − 1) video frames (causal VAE)."""
  if not isinstance(clip_frames, (int, np.integer)) or clip_frames < 1 or (clip_frames - 1) % 8:
    raise InputError(f"--clip_frames {clip_frames!r}: must be 1 + 8k (e.g. 17, 121)")
  return 1 + (clip_frames - 1) // 8


def check_settings(*, clip_frames: int, stride: int, resolution: int, val_fraction: float,
                   no_face: str = "skip", detect_every: int = 5) -> dict:
  """The settings a rerun into the same folder must share (the report records them), each checked; a bad
  one is an :class:`InputError` naming its option."""
  check_clip_frames(clip_frames)
  for option, value in (("--stride", stride), ("--resolution", resolution), ("--detect_every", detect_every)):
    if value < 1:
      raise InputError(f"{option} {value}: must be >= 1")
  if no_face not in ("skip", "center"):
    raise InputError(f"--no_face {no_face!r}: must be 'skip' or 'center'")
  if not 0 <= val_fraction < 1:
    raise InputError(f"--val_fraction {val_fraction}: must be in [0, 1)")
  return {"clip_frames": clip_frames, "stride": stride, "resolution": resolution, "val_fraction": val_fraction}


def clip_starts(num_frames: int, clip_frames: int, stride: int) -> list[int]:
  if stride < 1:
    raise InputError(f"--stride {stride}: must be >= 1")
  return list(range(0, num_frames - clip_frames + 1, stride))


def reference_indices(num_frames: int, starts: Sequence[int], clip_frames: int, seed: int) -> list[int]:
  """For each clip, a frame outside it (or, when the clip fills the video, its last frame)."""
  rng = np.random.default_rng(seed)
  out = []
  for s in starts:
    outside = np.concatenate([np.arange(0, s), np.arange(s + clip_frames, num_frames)])
    out.append(int(rng.choice(outside)) if outside.size else s + clip_frames - 1)
  return out


def _path_seed(path: str) -> int:
  return int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "little")


# ---------------------------------------------------------------------------------------------
# Decoding


def extract_audio(path: str, sr: int = SAMPLE_RATE) -> np.ndarray:
  """The first audio track as float32 mono [samples] at ``sr``; :class:`SkipVideo` when there is none."""
  import soundfile

  with tempfile.TemporaryDirectory() as tmp:
    wav = os.path.join(tmp, "audio.wav")
    cmd = [media.ffmpeg_exe(), "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-vn", "-ac", "1",
           "-ar", str(sr), "-c:a", "pcm_s16le", "-y", wav]
    with quiet_fork():
      proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not os.path.isfile(wav):
      err = proc.stderr.strip()
      if "matches no streams" in err or "does not contain any stream" in err:
        raise SkipVideo("no audio track")
      detail = err.splitlines()[-1] if err else f"ffmpeg exit {proc.returncode}"
      if "Invalid data" in err or "moov atom not found" in err or "EBML header parsing failed" in err:
        raise SkipVideo(f"corrupt or not a media file ({detail})")
      raise SkipVideo(f"cannot read audio ({detail})")
    wave, _ = soundfile.read(wav, dtype="float32", always_2d=True)
  wave = wave.mean(axis=1)
  if wave.size == 0:
    raise SkipVideo("the audio track is empty")
  if not np.all(np.isfinite(wave)):
    raise SkipVideo("the audio holds NaN or inf samples")
  return wave


def iter_frames(path: str, fps: int = FPS) -> Iterator[np.ndarray]:
  """uint8 [H, W, 3] frames resampled to ``fps`` by ffmpeg, streamed (never all in memory)."""
  import imageio.v2 as iio

  try:
    with quiet_fork():
      reader = iio.get_reader(path, "ffmpeg", fps=fps)
  except Exception as e:  # imageio/ffmpeg raise OSError, RuntimeError, IndexError, ... on bad files
    lines = str(e).strip().splitlines()
    raise SkipVideo(f"cannot decode video ({type(e).__name__}: {lines[-1] if lines else ''})") from e
  try:
    it = iter(reader)
    while True:
      try:
        frame = next(it)
      except StopIteration:
        return
      except Exception as e:
        raise SkipVideo(f"cannot decode video ({type(e).__name__}: {e})") from e
      yield np.asarray(frame)[..., :3]
  finally:
    reader.close()


def _gray(frame: np.ndarray) -> np.ndarray:
  return np.round(frame.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)


def scan_video(path: str, detector: media.Detector | None, detect_every: int = 5) -> tuple[int, tuple, list]:
  """First pass: (frame count, (H, W), face boxes found on every ``detect_every``-th frame)."""
  count, shape, boxes = 0, None, []
  for frame in iter_frames(path):
    if shape is None:
      shape = frame.shape[:2]
    if detector is not None and count % detect_every == 0:
      boxes.extend(b for b in detector(_gray(frame)) if b[2] > 0 and b[3] > 0)
    count += 1
  if count == 0:
    raise SkipVideo("no video frames")
  return count, shape, boxes


def union_box(boxes: Sequence[media.Box]) -> media.Box:
  x0 = min(b[0] for b in boxes)
  y0 = min(b[1] for b in boxes)
  x1 = max(b[0] + b[2] for b in boxes)
  y1 = max(b[1] + b[3] for b in boxes)
  return (x0, y0, x1 - x0, y1 - y0)


def crop_frame(frame: np.ndarray, box: media.Box, resolution: int) -> np.ndarray:
  """uint8 [H, W, 3] → uint8 [resolution, resolution, 3] (area down, bicubic up). Kept uint8 while
  buffered: a 121-frame clip at 512² is 95 MB instead of 380 MB in float32."""
  import cv2

  crop = media.crop_square(frame, box)
  if crop.shape[0] != resolution:
    interp = cv2.INTER_AREA if crop.shape[0] > resolution else cv2.INTER_CUBIC
    crop = cv2.resize(np.ascontiguousarray(crop), (resolution, resolution), interpolation=interp)
  return crop


# ---------------------------------------------------------------------------------------------
# Models


def make_encoders(vae_module, vae_variables, speech_encoder, speech_window: str = "whole"):
  """``(encode_video, featurize)``: uint8 frames [T, S, S, 3] → normalised latents [t, h, w, C]
  (t = 1 + (T − 1)/8), and a 16 kHz wave + frame count → speech-encoder windows [F, 10, D] under the feature
  window policy ``speech_window`` (``read_jax.speech.window_policy``; the model must generate with the same one)."""
  @jax.jit
  def _encode(variables, x):  # [1, T, S, S, 3] → [1, t, h, w, C]
    z = vae_module.apply(variables, x, method=vae_module.encode).mode()
    return vae_module.apply(variables, z, method=vae_module.normalize_latents)

  def encode_video(frames: np.ndarray) -> np.ndarray:  # uint8 [T, S, S, 3]
    return np.asarray(_encode(vae_variables, to_pixels(frames)[None])[0], np.float32)

  def featurize(wave: np.ndarray, num_frames: int) -> np.ndarray:
    return np.asarray(speech_features(wave, speech_encoder, num_frames=num_frames, policy=speech_window), np.float32)

  return encode_video, featurize


def load_encoders(vae_path: str, speech_encoder_path: str, speech_window: str = "whole"):
  vae_module, vae_variables = load_vae(vae_path)
  return make_encoders(vae_module, vae_variables, load_speech_encoder(speech_encoder_path), speech_window)


# ---------------------------------------------------------------------------------------------
# One video


def video_clips(path: str, encode_video: Callable, featurize: Callable, *, clip_frames: int = 121,
                stride: int = 121, resolution: int = 512, detector: media.Detector | None = None,
                no_face: str = "skip", detect_every: int = 5, face_scale: float = media.FACE_SCALE
                ) -> tuple[list[dict[str, np.ndarray]], dict]:
  """All training examples of one video and notes for the report; :class:`SkipVideo` when it has none."""
  if not os.path.isfile(path):
    raise SkipVideo("no such file")
  check_clip_frames(clip_frames)
  wave = extract_audio(path)  # fails fast on corrupt files and videos without sound
  num_video, (h, w), boxes = scan_video(path, detector, detect_every)
  num_audio = len(wave) * FPS // SAMPLE_RATE  # frames whose time lies inside the audio
  num_frames = min(num_video, num_audio)
  starts = clip_starts(num_frames, clip_frames, stride)
  if not starts:
    raise SkipVideo(f"too short: {num_frames} frames at {FPS} fps (video {num_video}, audio {num_audio}) "
                    f"< clip_frames={clip_frames}")
  notes = {}
  if boxes:
    box = media.square_box(h, w, union_box(boxes), face_scale)
  elif no_face == "center":
    box = media.square_box(h, w, None)
    notes["crop"] = "no face found: centre crop" if detector is not None else "no detector: centre crop"
  else:
    raise SkipVideo("no face found" if detector is not None else "no face detector available")
  refs = reference_indices(num_frames, starts, clip_frames, _path_seed(path))
  speech = featurize(wave, num_frames)  # [F, 10, D]
  if not np.all(np.isfinite(speech)):
    raise SkipVideo("non-finite speech features")

  ref_frames: dict[int, np.ndarray] = {}
  clip_latents: list[np.ndarray] = []
  window: list[np.ndarray] = []  # cropped frames of the clips still open
  next_clip, window_start = 0, 0
  wanted_refs = set(refs)
  for i, frame in enumerate(iter_frames(path)):
    if i >= num_frames or next_clip >= len(starts) and wanted_refs <= set(ref_frames):
      break
    pixels = crop_frame(frame, box, resolution)
    if i in wanted_refs:
      ref_frames[i] = pixels
    if next_clip < len(starts) and i >= window_start:
      window.append(pixels)
      while next_clip < len(starts) and i == starts[next_clip] + clip_frames - 1:
        s = starts[next_clip] - window_start
        clip_latents.append(encode_video(np.stack(window[s:s + clip_frames])))  # [f, h, w, C]
        next_clip += 1
        if next_clip < len(starts):  # drop frames no later clip needs
          drop = starts[next_clip] - window_start
          del window[:drop]
          window_start += drop
  if len(clip_latents) != len(starts) or not wanted_refs <= set(ref_frames):
    raise SkipVideo(f"the second decoding pass gave fewer frames than the first ({num_frames})")
  examples = []
  for s, r, z in zip(starts, refs, clip_latents):
    z_ref = encode_video(ref_frames[r][None])  # [1, h, w, C]
    latents = np.concatenate([z_ref, z], axis=0)
    if not np.all(np.isfinite(latents)):
      raise SkipVideo("non-finite VAE latents")
    examples.append({"latents": latents.astype(np.float16),
                     "speech": speech[s:s + clip_frames].astype(np.float16)})
  notes.update(frames=num_frames, clips=len(examples), crop_box=[int(v) for v in box],
               starts=starts, references=refs)
  return examples, notes


# ---------------------------------------------------------------------------------------------
# Many videos


def open_report(out_dir: str, settings: dict) -> dict:
  """The report of an earlier run into ``out_dir`` (or a new one); an error if it cannot be resumed (not a
  report, or written with other settings: a rerun must cut the same clips and the same train/val split)."""
  path = os.path.join(out_dir, REPORT)
  if not os.path.isfile(path):
    return {"settings": settings, "processed": {}, "skipped": {}}
  try:
    report = read_json(path)
  except InputError as e:
    raise DataError(f"{e}; move it away to start over") from None
  if not isinstance(report.get("processed"), dict) or not isinstance(report.get("skipped"), dict):
    raise DataError(f"{path}: not a preprocess report (needs 'processed' and 'skipped' objects)")
  if report.setdefault("settings", settings) != settings:
    raise DataError(f"{path}: written with {report['settings']}, now {settings}; use another output folder")
  return report


def _done(report: dict, path: str, out_dir: str) -> bool:
  entry = report["processed"].get(path)
  return entry is not None and all(os.path.isfile(os.path.join(out_dir, s)) for s in entry["shards"])


def preprocess(paths: Iterable[str], out_dir: str, encode_video: Callable, featurize: Callable, *,
               clip_frames: int = 121, stride: int = 121, resolution: int = 512,
               detector: media.Detector | None | object = "haar", no_face: str = "skip",
               val_fraction: float = 0.05, retry_skipped: bool = False, progress: bool = True,
               **clip_kwargs) -> dict:
  """Process ``paths`` into ``out_dir`` (shards + ``report.json``); returns the report.

  ``detector``: "haar" (OpenCV's cascade; centre crop if it is not installed and ``no_face="center"``),
  None, or any ``gray uint8 [H, W] -> [(x, y, w, h)]``. Errors in the models or the output directory
  raise; a problem with one video skips it with its reason. A video listed as processed whose shard is
  gone is redone. The report is written with each processed video (so skips found since the last one
  are redone after an interrupt) and at the end; when no video has given a clip, nothing is written.
  """
  settings = check_settings(clip_frames=clip_frames, stride=stride, resolution=resolution,
                            val_fraction=val_fraction, no_face=no_face,
                            detect_every=clip_kwargs.get("detect_every", 5))
  if detector == "haar":
    detector = media.haar_detector()
  report = open_report(out_dir, settings)
  paths = list(dict.fromkeys(os.path.abspath(p) for p in paths))
  todo = [p for p in paths if not _done(report, p, out_dir) and (retry_skipped or p not in report["skipped"])]
  report_path, tmp_dir = os.path.join(out_dir, REPORT), os.path.join(out_dir, ".tmp")
  bar = cli.progress(todo, desc="videos", unit="video") if progress else tqdm.tqdm(todo, disable=True)
  try:
    for path in bar:
      try:
        examples, notes = video_clips(path, encode_video, featurize, clip_frames=clip_frames, stride=stride,
                                      resolution=resolution, detector=detector, no_face=no_face, **clip_kwargs)
      except SkipVideo as e:
        report["processed"].pop(path, None)
        report["skipped"][path] = str(e)
        continue
      split = "val" if is_val(path, val_fraction) else "train"
      name = f"{split}-{hashlib.sha256(path.encode()).hexdigest()[:16]}"
      shutil.rmtree(tmp_dir, ignore_errors=True)  # what a killed run left
      shards = records.write_shards(examples, os.path.join(tmp_dir, name), examples_per_shard=10**9)
      final = [os.path.join(out_dir, os.path.basename(s)) for s in shards]
      for src, dst in zip(shards, final):
        os.replace(src, dst)  # the same name on a redo: a shard whose report entry was lost is overwritten
      report["skipped"].pop(path, None)
      report["processed"][path] = {"split": split, "shards": [os.path.basename(s) for s in final], **notes}
      write_json(report_path, report)
      bar.set_postfix(clips=sum(v["clips"] for v in report["processed"].values()), skipped=len(report["skipped"]))
  finally:
    bar.close()
    shutil.rmtree(tmp_dir, ignore_errors=True)  # an interrupted video's shard is never left behind
  if report["processed"] or os.path.isfile(report_path):
    write_json(report_path, report)
  return report


def preprocess_videos(inputs: Sequence[str], out_dir: str, *, ckpt: str | None = None, vae: str | None = None,
                      speech_encoder: str | None = None, clip_frames: int = 121, stride: int | None = None,
                      resolution: int = 512, val_fraction: float = 0.05, no_face: str = "skip",
                      no_detector: bool = False, detect_every: int = 5, retry_skipped: bool = False,
                      speech_window: str = "whole") -> dict:
  """``scripts/preprocess.py``: every check that needs no model (options, inputs, the output folder and its
  report) first, then the VAE and the speech encoder, then :func:`preprocess`; returns the report. When no video
  has given a clip it is a :class:`DataError` listing the first reasons, with nothing written."""
  vae = vae or (ckpt and os.path.join(ckpt, "vae"))
  speech_encoder = speech_encoder or (ckpt and part_path(ckpt))
  if not vae or not speech_encoder:
    raise InputError("--ckpt: needed, or both --vae and --speech-encoder")
  stride = clip_frames if stride is None else stride
  settings = check_settings(clip_frames=clip_frames, stride=stride, resolution=resolution,
                            val_fraction=val_fraction, no_face=no_face, detect_every=detect_every)
  window_policy(speech_window)  # a bad value fails before any model loads
  if speech_window != "whole":  # recorded, so a rerun with another policy is refused (absent: "whole", as before)
    settings["speech_window"] = speech_window
  paths = list_videos(inputs)
  out_dir = check_output_dir(out_dir)
  open_report(out_dir, settings)
  encode_video, featurize = load_encoders(vae, speech_encoder, speech_window)
  report = preprocess(paths, out_dir, encode_video, featurize, clip_frames=clip_frames, stride=stride,
                      resolution=resolution, val_fraction=val_fraction, detector=None if no_detector else "haar",
                      no_face="center" if no_detector else no_face, retry_skipped=retry_skipped,
                      detect_every=detect_every)
  if not report["processed"]:
    raise DataError(usable_summary({p: report["skipped"][p] for p in paths if p in report["skipped"]}, "video"))
  return report


def write_frame_shards(paths: Sequence[str], out_dir: str, *, resolution: int, min_frames: int = 17,
                       val_fraction: float = 0.05, progress: bool = True) -> dict[str, int]:
  """Videos → ``{out_dir}/{train,val}-NNNNN.array_record`` of ``{"video": uint8 [F, S, S, 3]}`` (one per
  video, 25 fps, the largest centred square resized to ``resolution``): the data of VAE training
  (read_jax/train/vae_stage.py). Unreadable or shorter-than-``min_frames`` videos are skipped; returns
  the number of videos per split and skipped. The shards are written under ``out_dir/.tmp`` and moved
  into place together at the end: an interrupt leaves none."""
  counts = {"train": 0, "val": 0, "skipped": 0}
  tmp_dir = os.path.join(out_dir, ".tmp")
  shutil.rmtree(tmp_dir, ignore_errors=True)
  writers = {split: records.ShardWriter(os.path.join(tmp_dir, split), examples_per_shard=64)
             for split in ("train", "val")}
  paths = list(paths)
  bar = cli.progress(paths, desc="frames", unit="video") if progress else tqdm.tqdm(paths, disable=True)
  try:
    for path in bar:
      try:
        frames = list(iter_frames(path))
      except SkipVideo:
        counts["skipped"] += 1
        continue
      if len(frames) < min_frames:
        counts["skipped"] += 1
        continue
      box = media.square_box(*frames[0].shape[:2], None)
      video = np.stack([crop_frame(f, box, resolution) for f in frames])
      split = "val" if is_val(path, val_fraction) else "train"
      writers[split].write({"video": video})
      counts[split] += 1
    for w in writers.values():
      for shard in w.close():
        os.replace(shard, os.path.join(out_dir, os.path.basename(shard)))
  finally:
    bar.close()
    for w in writers.values():
      w.close()
    shutil.rmtree(tmp_dir, ignore_errors=True)
  return counts
