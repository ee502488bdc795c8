"""The paper's evaluation over folders of videos: FID, FVD, Sync-C / Sync-D (Table 1), the same per time window
(Table 3's drift), and the face measures dlib makes possible (LMD, identity, mouth sync, silence).

  report = evaluate("gen/", "ref/", weights="metric_weights/", out="report.json")   # scripts/evaluate.py
  write_steps_report({"steps": [1, 2, ...], "runs": {...}, ...}, "fig3.json")     # Fig. 3: quality vs steps

Videos are paired by file name (``gen/a.mp4`` ↔ ``ref/a.mp4``); each carries its speech track. Per video:

* **FID** (Seitzer's pytorch-fid protocol): the 2048-d pool3 features of FID's InceptionV3 for every
  ``fid_every``-th frame (25 fps), all generated frames against all reference frames, Fréchet distance in
  float64 (``read_jax.eval.inception``, ``read_jax.eval.frechet``).
* **FVD** (cd-fvd's protocol): the 400 Kinetics logits of the I3D for each run of 16 consecutive frames
  (non-overlapping), generated clips against reference clips (``read_jax.eval.i3d``).
* **faces** (dlib, the optional ``faces`` extra, ``read_jax.eval.faces``): LMD (mouth landmarks against the
  reference video, in inter-ocular distances), identity (cosine of the face descriptor of every 25th generated
  frame with the reference's first frame), the mouth track's lip sync with the speech envelope (r, best lag ±1),
  the mouth opening in pauses over in speech, and a landmark-expression Fréchet distance (not E-FID).
* **Sync-C / Sync-D**: SyncNet's confidence and distance with the ±15-frame offset search on 224² face crops
  (OpenCV's Haar detector on every 5th frame, the median box enlarged as SyncNet's pipeline crops: 1.4×),
  averaged over videos; for the generated and, as the paper's "GT" row, the reference videos
  (``read_jax.eval.syncnet``).

Each network reads its weights from ``weights/`` (``scripts/convert.py import-metric-weights`` writes them
from the published files); a metric whose file is missing is skipped with one line saying which file and how
to make it, and the others still run. Features are cached per video (keyed by the file's content hash, the
feature and the weights' hash) in ``cache/``, so a second run computes only what changed; the same inputs
and weights give the same report.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from read_jax import audio as audio_lib
from read_jax import media
from read_jax.constants import FPS
from read_jax.data.preprocess import SkipVideo, iter_frames
from read_jax.errors import ConfigError, InputError, MediaError
from read_jax.eval import faces, frechet, i3d, inception, syncnet
from read_jax.files import atomic_path, file_sha256

METRICS = ("fid", "fvd", "sync", "faces")
# metric → (weights file in --weights, the published file it is converted from, where that is published)
WEIGHTS = {
  "fid": ("fid_inception.safetensors", "pt_inception-2015-12-05-6726825d.pth",
          "https://github.com/mseitzer/pytorch-fid/releases (pytorch-fid 0.3.0's FID_WEIGHTS_URL)"),
  "fvd": ("i3d.safetensors", "i3d_pretrained_400.pt", "cd-fvd 0.1.1's I3D download"),
  "sync": ("syncnet.safetensors", "syncnet_v2.model", "syncnet_python's download_model.sh"),
}
CONVERT_FLAG = {"fid": "--fid", "fvd": "--i3d", "sync": "--syncnet"}
COLUMNS = (("fid", "FID↓"), ("fvd", "FVD↓"), ("sync_c", "Sync-C↑"), ("sync_d", "Sync-D↓"), ("e_fid", "E-FID↓"))
FACE_COLUMNS = (("lmd", "LMD↓"), ("identity", "identity↑"), ("mouth_sync_r", "mouth–speech r↑"),
                ("silence_ratio", "mouth in pauses / in speech↓"),
                ("expression_fd_landmarks", "landmark expression FD↓"))
CROP_SCALE = 1.4  # SyncNet's pipeline: the detection box grown by crop_scale 0.4
_INCEPTION_BATCH = 16


@dataclasses.dataclass
class Video:
  name: str
  path: str
  frames: np.ndarray  # uint8 [T, H, W, 3] at 25 fps
  audio: np.ndarray | None  # float32 [n] at 16 kHz, None without a sound track
  sha256: str


def load_video(path: str, name: str | None = None) -> Video:
  """Frames at 25 fps and the speech track of one mp4 (any container ffmpeg reads); MediaError naming it."""
  try:
    frames = np.stack(list(iter_frames(path, FPS)))
  except SkipVideo as e:
    raise MediaError(f"{path}: {e}") from None
  except ValueError:
    raise MediaError(f"{path}: no video frames") from None
  try:
    wave = audio_lib.load_audio(path)
  except InputError:
    wave = None
  return Video(name or os.path.splitext(os.path.basename(path))[0], path, frames, wave, file_sha256(path))


def first_frames(video: Video, frames: int) -> Video:
  """The first ``frames`` frames of a video and the speech under them, a video of its own (its own cache key);
  the video itself when it is not longer."""
  if len(video.frames) <= frames:
    return video
  wave = None if video.audio is None else video.audio[:frames * audio_lib.SAMPLE_RATE // FPS]
  sha = hashlib.sha256(f"{video.sha256}:first{frames}".encode()).hexdigest()
  return dataclasses.replace(video, frames=video.frames[:frames], audio=wave, sha256=sha)


def pair_videos(generated: str, reference: str | None) -> list[tuple[str, str | None]]:
  """(generated path, reference path) by file name; InputError listing what has no partner."""
  exts = (".mp4", ".mov", ".mkv", ".webm", ".avi")

  def listing(folder):
    if not os.path.isdir(folder):
      raise InputError(f"{folder}: no such folder")
    out = {os.path.splitext(n)[0]: os.path.join(folder, n) for n in sorted(os.listdir(folder))
           if n.lower().endswith(exts)}
    if not out:
      raise InputError(f"{folder}: no videos ({', '.join(exts)})")
    return out

  gen = listing(generated)
  if reference is None:
    return [(gen[k], None) for k in sorted(gen)]
  ref = listing(reference)
  missing = sorted(set(gen) ^ set(ref))
  if missing:
    raise InputError(f"{generated} and {reference}: videos without a partner of the same name: "
                     f"{', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}")
  return [(gen[k], ref[k]) for k in sorted(gen)]


# ---------------------------------------------------------------------------------------------
# Networks and their features


_LOADERS = {"fid": inception.load_inception, "fvd": i3d.load_i3d, "sync": syncnet.load_syncnet}


@functools.lru_cache(maxsize=6)
def _load_weights(metric: str, path: str, size: int, mtime_ns: int) -> tuple:
  """A metric network's variables and its file's sha256, kept for the next evaluation in this process (the same
  file: its size and modification time) — a sweep over checkpoints converts each network once, not per call."""
  del size, mtime_ns  # the cache key only
  return _LOADERS[metric](path), file_sha256(path)


@functools.lru_cache(maxsize=1)
def _face_models() -> faces.FaceModels:
  return faces.FaceModels.load()


class Networks:
  """The metric networks whose weights are in ``folder``; ``missing[metric]`` says why one is absent."""

  def __init__(self, folder: str | None, metrics: Sequence[str]):
    self.variables, self.hashes, self.missing = {}, {}, {}
    self.faces = None
    if "faces" in metrics:
      try:
        self.faces = _face_models()
        self.hashes["faces"] = {"file": faces.PREDICTOR_FILE + ", " + faces.DESCRIPTOR_FILE, "sha256": "dlib"}
      except ConfigError as e:
        self.missing["faces"] = f"faces: skipped, {e}"
    for metric in (m for m in metrics if m != "faces"):
      file, published, where = WEIGHTS[metric]
      path = os.path.join(folder, file) if folder else None
      if path is None or not os.path.isfile(path):
        self.missing[metric] = (f"{metric}: skipped, no weights {path or file} — convert {published} (from {where}) "
                                f"with python scripts/convert.py import-metric-weights {CONVERT_FLAG[metric]} "
                                f"{published} --out {folder or 'DIR'}")
        continue
      st = os.stat(path)
      self.variables[metric], sha = _load_weights(metric, os.path.abspath(path), st.st_size, st.st_mtime_ns)
      self.hashes[metric] = {"file": file, "sha256": sha}

  def has(self, metric: str) -> bool:
    return metric in self.variables or (metric == "faces" and self.faces is not None)


@functools.partial(jax.jit)
def _inception(variables, images):
  return inception.FIDInceptionV3().apply(variables, images)


@functools.partial(jax.jit)
def _i3d(variables, video):
  return i3d.I3D().apply(variables, i3d.i3d_preprocess(video))


def inception_features(variables, frames: np.ndarray, every: int = 1) -> np.ndarray:
  """[T', 2048] float64 of every ``every``-th frame, in fixed batches (one compiled shape)."""
  frames = frames[::every]
  out = []
  for lo in range(0, len(frames), _INCEPTION_BATCH):
    batch = frames[lo:lo + _INCEPTION_BATCH]
    pad = _INCEPTION_BATCH - len(batch)
    batch = np.concatenate([batch, np.repeat(batch[-1:], pad, 0)]) if pad else batch
    out.append(np.asarray(_inception(variables, jnp.asarray(batch)), np.float64)[:len(batch) - pad])
  return np.concatenate(out) if out else np.zeros((0, inception.FEATURES))


def i3d_features(variables, frames: np.ndarray) -> np.ndarray:
  """[k, 400] float64 logits of the k = T // 16 runs of 16 consecutive frames."""
  n = len(frames) // i3d.CLIP_FRAMES
  out = [np.asarray(_i3d(variables, jnp.asarray(frames[None, j * i3d.CLIP_FRAMES:(j + 1) * i3d.CLIP_FRAMES])),
                    np.float64)[0] for j in range(n)]
  return np.stack(out) if out else np.zeros((0, i3d.CLASSES))


def face_crops(frames: np.ndarray, size: int = syncnet.SIZE, detect_every: int = 5) -> np.ndarray | None:
  """uint8 [T, size, size, 3]: the median Haar face box of the video, grown 1.4× and squared, every frame
  cropped to it (a talking head barely moves); None when no face is found."""
  import cv2  # opencv-python-headless, a dependency of media's detector

  detector = media.haar_detector()
  if detector is None:
    raise ConfigError("face crops: OpenCV's Haar cascade is not available (opencv-python-headless)")
  boxes = []
  for i in range(0, len(frames), detect_every):
    found = detector(cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY))
    if len(found):
      boxes.append(max(found, key=lambda b: b[2] * b[3]))
  if not boxes:
    return None
  x, y, w, h = np.median(np.asarray(boxes, np.float64), axis=0)
  box = media.square_box(frames.shape[1], frames.shape[2], (int(x), int(y), int(w), int(h)), scale=CROP_SCALE)
  return np.stack([cv2.resize(np.ascontiguousarray(media.crop_square(f, box)), (size, size),
                              interpolation=cv2.INTER_AREA) for f in frames])


class FeatureCache:
  """``folder/<video sha256[:16]>-<feature>-<weights sha256[:12]>.npz``; None: no cache."""

  def __init__(self, folder: str | None):
    self.folder = folder
    if folder:
      os.makedirs(folder, exist_ok=True)
    self.hits = self.misses = 0

  def get(self, video: Video, feature: str, weights_sha: str, compute: Callable[[], dict]) -> dict:
    if not self.folder:
      return compute()
    path = os.path.join(self.folder, f"{video.sha256[:16]}-{feature}-{weights_sha[:12]}.npz")
    if os.path.isfile(path):
      try:
        with np.load(path) as f:
          self.hits += 1
          return {k: f[k] for k in f.files}
      except (OSError, ValueError):
        pass  # a damaged entry: computed again
    self.misses += 1
    result = compute()
    with atomic_path(path) as tmp:
      with open(tmp, "wb") as fh:
        np.savez(fh, **result)
    return result


# ---------------------------------------------------------------------------------------------
# The evaluation


def _windows(num_frames: int, window_s: float) -> list[tuple[int, int]]:
  step = int(round(window_s * FPS))
  return [(lo, lo + step) for lo in range(0, num_frames - step + 1, step)] if step > 0 else []


def _sync_of(variables, crops: np.ndarray, wave: np.ndarray) -> dict:
  r = syncnet.sync_scores(variables, crops, wave)
  return {"offset": np.int64(r["offset"]), "min_dist": np.float64(r["min_dist"]),
          "confidence": np.float64(r["confidence"])}


def check_metrics(metrics: Sequence[str]) -> None:
  """InputError naming the ``--metrics`` this suite does not know."""
  unknown = sorted(set(metrics) - set(METRICS))
  if unknown:
    raise InputError(f"--metrics: unknown {unknown}; choose from {list(METRICS)}")


def evaluate(generated: str, reference: str | None = None, *, weights: str | None = None,
             metrics: Sequence[str] = METRICS, window_s: float = 5.0, fid_every: int = 1, cache: str | None = None,
             progress: Callable | None = None, log: Callable[[str], None] = print, cut_to_shorter: bool = False
             ) -> dict:
  """Score the videos of ``generated`` (against ``reference``, paired by name); the report (module docstring).

  ``progress(iterable, total=, desc=)`` wraps the loop over videos (a progress bar); ``log`` gets the skip
  lines. ``cut_to_shorter``: each pair is scored on the frames both have (:func:`first_frames`), as a set
  generated from the references' speech needs: its length is the speech's, or the first seconds of it."""
  check_metrics(metrics)
  pairs = pair_videos(generated, reference)
  if reference is None and any(m in metrics for m in ("fid", "fvd")):
    raise InputError("FID and FVD compare two sets: give --reference (or --metrics sync)")
  nets = Networks(weights, metrics)
  for line in nets.missing.values():
    log(line)
  store = FeatureCache(cache)
  wrap = progress or (lambda it, **kw: it)
  feats = {"gen": {"fid": [], "fvd": []}, "ref": {"fid": [], "fvd": []}}
  windows = {"gen": {"fid": {}, "fvd": {}, "sync_c": {}, "sync_d": {}}, "ref": {"fid": {}, "fvd": {}}}
  per_video, sync = {}, {"gen": [], "ref": []}
  tracks = {"gen": [], "ref": []}
  frames_total = {"gen": 0, "ref": 0}
  for gen_path, ref_path in wrap(pairs, total=len(pairs), desc="videos"):
    row, videos = {}, {}
    loaded = {side: load_video(path) for side, path in (("gen", gen_path), ("ref", ref_path)) if path is not None}
    if cut_to_shorter and len(loaded) == 2:
      shorter = min(len(v.frames) for v in loaded.values())
      loaded = {side: first_frames(v, shorter) for side, v in loaded.items()}
    for side, video in loaded.items():
      path = video.path
      frames_total[side] += len(video.frames)
      spans = _windows(len(video.frames), window_s)
      if nets.has("fid"):
        f = store.get(video, f"inception{fid_every}", nets.hashes["fid"]["sha256"],
                      lambda: {"x": inception_features(nets.variables["fid"], video.frames, fid_every)})["x"]
        feats[side]["fid"].append(f)
        for w, (lo, hi) in enumerate(spans):
          windows[side]["fid"].setdefault(w, []).append(f[-(-lo // fid_every):-(-hi // fid_every)])
      if nets.has("fvd"):
        f = store.get(video, "i3d", nets.hashes["fvd"]["sha256"],
                      lambda: {"x": i3d_features(nets.variables["fvd"], video.frames)})["x"]
        feats[side]["fvd"].append(f)
        per = int(round(window_s * FPS)) // i3d.CLIP_FRAMES
        for w in range(len(spans)):
          windows[side]["fvd"].setdefault(w, []).append(f[w * per:(w + 1) * per])
      if nets.has("sync"):
        if video.audio is None:
          raise MediaError(f"{path}: no sound track (Sync-C / Sync-D need the speech)")
        def crop():
          found = face_crops(video.frames)
          return {"x": found if found is not None else np.zeros((0,), np.uint8)}

        crops = store.get(video, "facecrops", "haar", crop)["x"]
        if crops.ndim != 4:
          log(f"sync: {path}: no face found, left out")
        else:
          whole = store.get(video, "sync", nets.hashes["sync"]["sha256"],
                            lambda: _sync_of(nets.variables["sync"], crops, video.audio))
          sync[side].append(whole)
          row[f"{side}_sync"] = {k: float(v) for k, v in whole.items()}
          if side == "gen":
            for w, (lo, hi) in enumerate(spans):
              a = video.audio[lo * audio_lib.SAMPLE_RATE // FPS:hi * audio_lib.SAMPLE_RATE // FPS]
              r = store.get(video, f"sync{lo}-{hi}", nets.hashes["sync"]["sha256"],
                            lambda: _sync_of(nets.variables["sync"], crops[lo:hi], a))
              windows["gen"]["sync_c"].setdefault(w, []).append(float(r["confidence"]))
              windows["gen"]["sync_d"].setdefault(w, []).append(float(r["min_dist"]))
      if nets.has("faces"):
        t = store.get(video, "dlibtrack", "dlib", lambda: dataclasses.asdict(nets.faces.track(video.frames,
                                                                                              detect_every=5)))
        tracks[side].append(faces.FaceTrack(t["landmarks"], t["found"], t["boxes"]))
        videos[side] = video
      row[f"{side}_frames"] = len(video.frames)
    if nets.has("faces"):
      row.update(_face_row(nets.faces, store, videos["gen"], tracks["gen"][-1], videos.get("ref"),
                           tracks["ref"][-1] if ref_path else None))
    per_video[os.path.splitext(os.path.basename(gen_path))[0]] = row

  results, skipped = {}, dict(nets.missing)
  for metric in ("fid", "fvd"):
    if nets.has(metric):
      a, b = np.concatenate(feats["gen"][metric]), np.concatenate(feats["ref"][metric])
      if min(len(a), len(b)) < 2:
        skipped[metric] = f"{metric}: skipped, fewer than 2 samples ({len(a)} generated, {len(b)} reference)"
      else:
        results[metric] = frechet.frechet_from_features(a, b)
  if nets.has("sync"):
    for side, suffix in (("gen", ""), ("ref", "_reference")):
      if sync[side]:
        results["sync_c" + suffix] = float(np.mean([s["confidence"] for s in sync[side]]))
        results["sync_d" + suffix] = float(np.mean([s["min_dist"] for s in sync[side]]))
  if nets.has("faces"):
    for key in ("lmd", "identity", "mouth_sync_r", "silence_ratio"):
      values = [row[key] for row in per_video.values() if np.isfinite(row.get(key, np.nan))]
      if values:
        results[key] = float(np.mean(values))
    found = [t for t in tracks["gen"] if t.found.sum() >= 2]
    if found and len(found) == len(tracks["gen"]) and reference is not None:
      results["expression_fd_landmarks"] = faces.expression_frechet(tracks["gen"], tracks["ref"])
    results["face_found"] = float(np.mean(np.concatenate([t.found for t in tracks["gen"]])))
  skipped["e_fid"] = ("e_fid: not computed — E-FID needs a 3DMM expression reconstruction model; none runs "
                      "offline here")

  curve = {"start_s": [], "fid": [], "fvd": [], "sync_c": [], "sync_d": []}
  count = max([len(v) for side in windows.values() for v in side.values()] + [0])
  for w in range(count):
    curve["start_s"].append(w * window_s)
    for metric in ("fid", "fvd"):
      a = [x for x in windows["gen"][metric].get(w, []) if len(x)]
      b = [x for x in windows["ref"][metric].get(w, []) if len(x)]
      ok = a and b and min(sum(map(len, a)), sum(map(len, b))) >= 2
      curve[metric].append(frechet.frechet_from_features(np.concatenate(a), np.concatenate(b)) if ok else None)
    for metric in ("sync_c", "sync_d"):
      values = windows["gen"][metric].get(w)
      curve[metric].append(float(np.mean(values)) if values else None)

  return {
    "inputs": {"generated": os.path.abspath(generated), "reference": reference and os.path.abspath(reference),
               "videos": len(pairs), "frames": frames_total,
               "fid_samples": {s: int(sum(map(len, feats[s]["fid"]))) for s in feats},
               "fvd_samples": {s: int(sum(map(len, feats[s]["fvd"]))) for s in feats},
               "sync_videos": {s: len(sync[s]) for s in sync}},
    "settings": {"fps": FPS, "fid_every": fid_every, "fvd_clip_frames": i3d.CLIP_FRAMES,
                 "sync_vshift": syncnet.VSHIFT, "sync_crop_scale": CROP_SCALE, "window_s": window_s,
                 "metrics": list(metrics), "cut_to_shorter": cut_to_shorter},
    "weights": nets.hashes,
    "metrics": results,
    "skipped": skipped,
    "windows": curve,
    "per_video": per_video,
  }


def _face_row(models, store, gen: Video, gen_track, ref: Video | None, ref_track) -> dict:
  """The face measures of one generated video (against its reference where there is one)."""
  row = {"face_found": float(gen_track.found.mean())}
  if ref is not None and ref_track.found.any():
    row["lmd"] = faces.lmd(gen_track, ref_track)

    def identity():
      first = int(np.argmax(ref_track.found))
      anchor = models.descriptor(ref.frames[first], ref_track.landmarks[first])
      frames = [i for i in range(0, len(gen.frames), FPS) if gen_track.found[i]]
      sims = [faces.identity_similarity(anchor, models.descriptor(gen.frames[i], gen_track.landmarks[i]))
              for i in frames]
      return {"x": np.float64(np.mean(sims) if sims else np.nan)}

    row["identity"] = float(store.get(gen, f"identity-{ref.sha256[:16]}", "dlib", identity)["x"])
  mouth = faces.mouth_aspect(gen_track.landmarks)
  if gen.audio is not None and np.isfinite(mouth).sum() > 2:
    row["mouth_sync_r"], row["mouth_sync_lag"] = map(float, faces.envelope_sync(mouth, gen.audio))
    row["silence_ratio"] = faces.silence_closure(mouth, gen.audio)["silence_ratio"]
  return row


def markdown(report: dict) -> str:
  """The paper's Table 1 columns (FID, FVD, Sync-C, Sync-D, E-FID): generated, then the reference's Sync."""
  m = report["metrics"]

  def cell(key):
    return f"{m[key]:.3f}" if key in m else "—"

  lines = ["| | " + " | ".join(label for _, label in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|",
           "| generated | " + " | ".join(cell(k) for k, _ in COLUMNS) + " |"]
  if "sync_c_reference" in m:
    lines.append("| reference (GT) | — | — | " + f"{m['sync_c_reference']:.3f} | {m['sync_d_reference']:.3f} | — |")
  extra = [(k, label) for k, label in FACE_COLUMNS if k in m]
  if extra:
    lines += ["", "| | " + " | ".join(label for _, label in extra) + " |", "|---" * (len(extra) + 1) + "|",
              "| generated | " + " | ".join(cell(k) for k, _ in extra) + " |"]
  notes = [f"- {reason}" for reason in report["skipped"].values()]
  counts = report["inputs"]
  head = (f"{counts['videos']} videos; FID on {counts['fid_samples']['gen']} / {counts['fid_samples']['ref']} "
          f"frames, FVD on {counts['fvd_samples']['gen']} / {counts['fvd_samples']['ref']} clips of 16 frames.")
  return "\n".join([head, "", *lines, "", *notes]) + "\n"


def plot_windows(report: dict, path: str) -> None:
  """The metrics per time window (Table 3's drift curve) as a PNG."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  curve = report["windows"]
  keys = [k for k in ("fid", "fvd", "sync_c", "sync_d") if any(v is not None for v in curve[k])]
  fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.2 * max(len(keys), 1), 2.8), squeeze=False)
  for ax, key in zip(axes[0], keys):
    xs = [x for x, v in zip(curve["start_s"], curve[key]) if v is not None]
    ax.plot(xs, [v for v in curve[key] if v is not None], marker="o")
    ax.set_title(dict(COLUMNS).get(key, key))
    ax.set_xlabel(f"window start (s), {report['settings']['window_s']:g} s windows")
  _save_png(fig, path)


def _write_json_and_md(obj: dict, out: str, text: str) -> str:
  """``out`` (JSON) and ``<stem>.md`` (``text``), each written atomically; returns the stem."""
  stem = os.path.splitext(out)[0]
  with atomic_path(out) as tmp:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=1, sort_keys=True)
  with atomic_path(stem + ".md") as tmp:
    with open(tmp, "w") as f:
      f.write(text)
  return stem


def _save_png(fig, path: str) -> None:
  import matplotlib.pyplot as plt

  fig.tight_layout()
  with atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=120, format="png")
  plt.close(fig)


def write_report(report: dict, out: str) -> list[str]:
  """report.json, report.md and report.png (the windows) beside it; the paths written."""
  stem = _write_json_and_md(report, out, markdown(report))
  paths = [out, stem + ".md"]
  if report["windows"]["start_s"]:
    plot_windows(report, stem + ".png")
    paths.append(stem + ".png")
  return paths


# ---------------------------------------------------------------------------------------------
# Quality against sampling steps (the paper's Fig. 3): one run of generation and scoring per step count


# The columns of the steps report, in this order (then any other metric, by name).
_STEPS_LABELS = {**dict(COLUMNS), "sync_c_reference": "Sync-C↑ (GT)", "sync_d_reference": "Sync-D↓ (GT)",
                 **dict(FACE_COLUMNS), "face_found": "face found↑"}


def _steps_metrics(combined: dict) -> list[str]:
  """Every metric some run has, in the order of ``_STEPS_LABELS``."""
  present = {k for run in combined["runs"].values() for k in run["metrics"]}
  order = list(_STEPS_LABELS)
  return sorted(present, key=lambda k: (order.index(k) if k in order else len(order), k))


def steps_markdown(combined: dict) -> str:
  """One row per step count: wall and denoiser seconds per clip, then every metric any run has."""
  keys = _steps_metrics(combined)
  first = combined["runs"][str(combined["steps"][0])]["generation"]
  head = (f"{first['videos']} videos ({first['video_s']:.1f} s, {first['clips']} clips) per step count; "
          f"checkpoint {combined['ckpt']} ({combined['ckpt_id']}).")
  header = ["steps", "wall s / clip", "denoiser s / clip", *(_STEPS_LABELS.get(k, k) for k in keys)]
  lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
  for s in combined["steps"]:
    run = combined["runs"][str(s)]
    g, m = run["generation"], run["metrics"]
    cells = [str(s), f"{g['wall_s_per_clip']:.3f}", f"{g['denoise_s_per_clip']:.3f}",
             *(f"{m[k]:.3f}" if k in m else "—" for k in keys)]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join([head, "", *lines]) + "\n"


def plot_steps(combined: dict, path: str) -> None:
  """Fig. 3 as a PNG: each metric against the sampling steps (log2 axis), wall seconds per clip on a second axis."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  steps = combined["steps"]
  runs = [combined["runs"][str(s)] for s in steps]
  wall = [run["generation"]["wall_s_per_clip"] for run in runs]
  panels = _steps_metrics(combined) or [None]  # no metric: the wall time alone
  cols = min(len(panels), 4)
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
  for ax in axes.flat[len(panels):]:
    ax.set_visible(False)
  for ax, key in zip(axes.flat, panels):
    if key is not None:
      points = [(s, run["metrics"][key]) for s, run in zip(steps, runs) if key in run["metrics"]]
      ax.plot(*zip(*points), marker="o", color="C0")
      ax.set_title(_STEPS_LABELS.get(key, key))
      ax.tick_params(axis="y", colors="C0")
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.minorticks_off()
    ax.set_xlabel("sampling steps")
    twin = ax.twinx()
    twin.plot(steps, wall, marker="s", linestyle="--", color="C1")
    twin.set_ylabel("wall s / clip", color="C1")
    twin.tick_params(axis="y", colors="C1")
  _save_png(fig, path)


def write_steps_report(combined: dict, out: str) -> list[str]:
  """The runs over step counts: ``out`` (JSON), its .md table and its .png (Fig. 3) beside it; the paths."""
  stem = _write_json_and_md(combined, out, steps_markdown(combined))
  plot_steps(combined, stem + ".png")
  return [out, stem + ".md", stem + ".png"]
