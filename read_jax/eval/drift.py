"""The demo's long-video and steps protocols (scripts/eval_drift.py): the paper's Table 3 and Fig. 3, scored with
the demo's own measures (read_jax/eval/talking.py) instead of FID/FVD/Sync, whose networks need real weights and
real faces.

  drift        Table 3: for each of ``num`` test identities one long synthetic clip (formant speech with pauses,
               as ``synthetic.make_clip`` draws it), generated in one go the checkpoint's way (clip mode: ANS
               clips chained by the motion prior), then scored per ``window_s`` window 0–5 s, 5–10 s, … to
               the end: lip sync r against the clip's true mouth track (and the ground-truth video's, the
               ceiling), face colour error to the portrait, mouth opening in the window's pauses and in its
               speech, the boundary ratio at the clip boundaries inside the window, flicker. A model that
               drifts shows it as colour error climbing, lip sync falling or the boundary ratio growing with
               the minutes.
  steps curve  Fig. 3: the same test clips at 1, 2, 4, 8, 16 sampling steps, scored by
               :func:`read_jax.eval.demo.evaluate` (``light=True``), with the generation's wall and denoiser
               seconds per ANS clip, in the format of ``scripts/evaluate.py``'s Fig. 3 report (so
               :func:`read_jax.eval.suite.write_steps_report` writes its table and figure).

Each window is scored by the talking-head functions on that slice of frames alone (the mouth measure estimates
the face size over the slice; a pause is a pause inside the window), so a window's numbers are what
``talking.*`` says of a 5 s video cut there. One identity's video is held at a time (15000 frames of 64² RGB:
184 MB, the ground truth as much again): generated, scored, dropped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence

import numpy as np

from read_jax import cli
from read_jax.ans import sampling
from read_jax.data import synthetic
from read_jax.eval import demo, generate, suite, talking
from read_jax.files import atomic_path
from read_jax.constants import FRAMES_PER_LATENT

WINDOW_S = 5.0
# Per-window measures, with the labels of the table and the figure.
DRIFT_LABELS = {
    "lip_sync": "lip sync r↑",
    "lip_sync_ground_truth": "lip sync r, ground truth",
    "colour_error": "colour error↓ (0–255)",
    "mouth_silence": "mouth in silence↓",
    "mouth_silence_truth": "mouth in silence, ground truth",
    "mouth_speech": "mouth in speech",
    "boundary_ratio": "boundary ratio↓ (1 = smooth)",
    "flicker": "flicker / ground truth",
}
# The figure's panels: (measure, its ground-truth reference drawn dashed or None).
DRIFT_PANELS = (("lip_sync", "lip_sync_ground_truth"), ("colour_error", None),
                ("mouth_silence", "mouth_silence_truth"), ("boundary_ratio", None), ("flicker", None))
TABLE_AT_S = (5, 60, 120, 300, 600)  # the markdown table's rows: the windows holding these times (s)
STEPS = (1, 2, 4, 8, 16)
# The steps report's metrics (demo.evaluate's summary keys; the rest of each summary is kept beside them).
STEPS_METRICS = ("lip_sync", "lip_sync_other_audio", "envelope_r", "colour_error", "mouth_silence",
                 "boundary_ratio_ans", "flicker")


def windows(num_frames: int, window_s: float = WINDOW_S, fps: int = synthetic.FPS) -> list[tuple[int, int]]:
  """Consecutive frame ranges ``[lo, hi)`` of ``window_s`` seconds from frame 0 that cover all ``num_frames``:
  a remainder of less than half a window joins the last window, a longer one is a window of its own."""
  step = int(round(window_s * fps))
  if step < 3 or num_frames < 1:
    raise ValueError(f"windows: need windows of ≥ 3 frames and a video, got {step} frames of {num_frames}")
  edges = list(range(0, num_frames, step)) + [num_frames]
  if len(edges) > 2 and edges[-1] - edges[-2] < step / 2:
    del edges[-2]
  return list(zip(edges[:-1], edges[1:]))


def _nan_to_none(x):
  return None if isinstance(x, float) and not math.isfinite(x) else x


def window_scores(video, truth, mouth, portrait, boundaries: Sequence[int], lo: int, hi: int) -> dict:
  """The measures of frames ``lo … hi − 1`` of ``video`` uint8 [F, H, W, 3] (the ground-truth video ``truth``
  [F, H, W, 3], its mouth track ``mouth`` [F], the portrait [H, W, 3]); ``boundaries``: the whole video's clip
  boundaries (first frame of each clip after the first), those with lo < b < hi are scored. NaN where the
  window has no pause (silence) or no boundary."""
  v, t, m = video[lo:hi], truth[lo:hi], mouth[lo:hi]
  inside = [b - lo for b in boundaries if lo < b < hi]
  silence = talking.silence_scores(v, t, m)
  return {
      "lip_sync": talking.lip_sync_correlation(v, m)[0],
      "lip_sync_ground_truth": talking.lip_sync_correlation(t, m)[0],
      "colour_error": talking.face_colour_error(v, portrait),
      "mouth_silence": silence["mouth_silence"],
      "mouth_silence_truth": silence["mouth_silence_truth"],
      "mouth_speech": silence["mouth_speech"],
      "silence_frames": silence["silence_frames"],
      "boundary_ratio": talking.boundary_ratio(v, inside) if inside else float("nan"),
      "boundaries": len(inside),
      "flicker": talking.flicker(v) / max(talking.flicker(t), 1e-12),
  }


def _boundaries(pipe, num_frames: int, mode: str) -> list[int]:
  """The clip boundaries of a generated video: ANS clips in clip mode, every latent frame in rolling mode."""
  if mode == "rolling":
    return talking.latent_boundaries(num_frames, first=FRAMES_PER_LATENT)
  return talking.clip_boundaries(num_frames, pipe.config.clip_frames)


def generate_long(pipe, portrait, audio, num_frames: int, *, progress=True, desc: str = "generate",
                  **sample) -> np.ndarray:
  """uint8 [num_frames, H, W, 3]: ``pipe.stream`` of the whole ``audio`` written into one array as the clips
  come (no list of pieces beside it), with a progress bar over the clips."""
  size = pipe.config.resolution
  video = np.empty((num_frames, size, size, 3), np.uint8)
  bar = cli.progress(total=None, desc=desc, unit="clip") if progress else None

  def tick(done, total):
    if bar is not None:
      bar.total = total
      bar.update(done - bar.n)

  at = 0
  try:
    for frames in pipe.stream(portrait, audio, progress=tick, **sample):
      video[at:at + len(frames)] = frames
      at += len(frames)
  finally:
    if bar is not None:
      bar.close()
  if at != num_frames:
    raise RuntimeError(f"generate_long: the pipeline gave {at} frames for {num_frames}")
  return video


def drift_identity(pipe, seed: int, seconds: float, *, window_s: float = WINDOW_S, sample_seed: int = 0,
                   speech: str = "formant", progress=True, **sample) -> dict:
  """One identity of :func:`drift`: its long clip made, generated, scored per window; the frames are dropped on
  return. Returns the seed, the voice, the seconds spent and ``windows``: ``start_s``, ``end_s`` and one list per
  measure (None for NaN)."""
  size = pipe.config.resolution
  t0 = time.perf_counter()
  clip = synthetic.make_clip(seed, seconds, size, speech=speech)
  make_s = time.perf_counter() - t0
  portrait = synthetic.render_face(clip.identity, mouth_open=0.0, size=size)
  num_frames = len(clip.frames)
  t0 = time.perf_counter()
  video = generate_long(pipe, portrait, clip.audio, num_frames, progress=progress, desc=f"generate {seed}",
                        seed=sample_seed, **sample)
  generate_s = time.perf_counter() - t0
  timings = {k: float(getattr(pipe.timings, k)) for k in ("speech_encoder", "speech_ae", "denoise", "vae_decode")}
  bounds = _boundaries(pipe, num_frames, sample.get("mode", pipe.config.mode))
  spans = windows(num_frames, window_s, pipe.config.fps)
  rows = []
  t0 = time.perf_counter()
  for lo, hi in (cli.progress(spans, desc=f"score {seed}", unit="window") if progress else spans):
    rows.append(window_scores(video, clip.frames, clip.mouth, portrait, bounds, lo, hi))
  score_s = time.perf_counter() - t0
  fps = pipe.config.fps
  curve = {"start_s": [lo / fps for lo, _ in spans], "end_s": [hi / fps for _, hi in spans]}
  curve.update({k: [_nan_to_none(float(r[k])) for r in rows] for k in rows[0]})
  return {"seed": clip.seed, "voice": clip.voice, "frames": num_frames, "clip_boundaries": len(bounds),
          "make_clip_s": make_s, "generate_s": generate_s, "score_s": score_s, "timings": timings,
          "windows": curve}


def drift(pipe, *, num: int = 3, seconds: float = 600.0, first: int = 100, seed: int = 0,
          window_s: float = WINDOW_S, speech: str = "formant", progress=True, **sample) -> dict:
  """Table 3 on the demo: :func:`drift_identity` for test identities ``first … first + num − 1``, one after the
  other, and the mean over them per window. ``sample``: keywords of ``pipe.stream`` (steps, cfg, mode, …)."""
  t0 = time.perf_counter()
  seeds = list(synthetic.split_seeds("test", num, first))
  identities = [drift_identity(pipe, s, seconds, window_s=window_s, sample_seed=seed, speech=speech,
                               progress=progress, **sample) for s in seeds]
  curve = identities[0]["windows"]
  mean = {"start_s": curve["start_s"], "end_s": curve["end_s"]}
  for key in DRIFT_LABELS:
    stacked = np.array([[np.nan if v is None else v for v in idn["windows"][key]] for idn in identities], float)
    with np.errstate(all="ignore"):
      counts = np.isfinite(stacked).sum(0)
      means = np.where(counts > 0, np.nansum(stacked, 0) / np.maximum(counts, 1), np.nan)
    mean[key] = [_nan_to_none(float(v)) for v in means]
  sampler = pipe.sampler(steps=sample.get("steps"), cfg=sample.get("cfg"), alpha=sample.get("alpha"),
                         beta=sample.get("beta"), solver=sample.get("solver"))
  steps, cfg, solver = sampler.steps, sampler.cfg, sampler.solver
  alpha, beta = (float(g) for g in np.asarray(sampler.guidance))
  settings = {"num": num, "seconds": seconds, "first": first, "test_seeds": seeds, "seed": seed,
              "window_s": window_s, "speech": speech, "resolution": pipe.config.resolution, "fps": pipe.config.fps,
              "mode": sample.get("mode", pipe.config.mode), "clip_frames": pipe.config.clip_frames,
              "steps": steps, "cfg": cfg, "alpha": alpha, "beta": beta, "solver": solver, "sample": dict(sample)}
  return {"settings": settings, "identities": identities, "mean": mean, "trend": trend(mean),
          "wall_s": time.perf_counter() - t0}


def trend(curve: dict, span_s: float = 60.0) -> dict:
  """Per measure of a curve (``drift()["mean"]``): the mean of its windows in the first and in the last ``span_s``
  seconds and the least-squares slope per minute over all windows (single 5 s windows are noisy; these are not).
  None where a span has no value."""
  starts, ends = np.array(curve["start_s"], float), np.array(curve["end_s"], float)
  out = {}
  for key in DRIFT_LABELS:
    v = np.array([np.nan if x is None else x for x in curve[key]], float)
    ok = np.isfinite(v)
    first, last = ok & (ends <= starts[0] + span_s + 1e-9), ok & (starts >= ends[-1] - span_s - 1e-9)
    out[key] = {"first": float(v[first].mean()) if first.any() else None,
                "last": float(v[last].mean()) if last.any() else None,
                "slope_per_min": float(np.polyfit(ends[ok] / 60, v[ok], 1)[0]) if ok.sum() > 1 else None}
  return out


def _window_at(curve: dict, at_s: float) -> int | None:
  """Index of the window holding time ``at_s`` (its end counted in: 5 s is the first 5 s window)."""
  for i, (lo, hi) in enumerate(zip(curve["start_s"], curve["end_s"])):
    if lo < at_s <= hi + 1e-9:
      return i
  return None


def _clock(s: float) -> str:
  return f"{int(s // 60)}:{s % 60:04.1f}" if s % 1 else f"{int(s // 60)}:{int(s % 60):02d}"


def drift_markdown(report: dict, at_s: Sequence[float] = TABLE_AT_S) -> str:
  """The drift curve at a few times: one row per window holding a time of ``at_s`` (and the first and last
  windows), the mean over identities (with the range over them) of each measure; then the means over the first and
  the last minute and the slope per minute (:func:`trend`)."""
  st = report["settings"]
  keys = ("lip_sync", "lip_sync_ground_truth", "colour_error", "mouth_silence", "mouth_silence_truth",
          "boundary_ratio", "flicker")
  header = ["window (m:s)", *(DRIFT_LABELS[k] for k in keys)]
  lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
  curve = report["mean"]
  rows = sorted({0, len(curve["end_s"]) - 1} | {i for i in (_window_at(curve, t) for t in at_s) if i is not None})
  for i in rows:
    cells = [f"{_clock(curve['start_s'][i])}–{_clock(curve['end_s'][i])}"]
    for k in keys:
      values = [v for v in (idn["windows"][k][i] for idn in report["identities"]) if v is not None]
      if not values:
        cells.append("—")
      elif len(values) == 1:
        cells.append(f"{values[0]:.3f}")
      else:
        cells.append(f"{np.mean(values):.3f} ({min(values):.3f}–{max(values):.3f})")
    lines.append("| " + " | ".join(cells) + " |")
  span = report["settings"]["seconds"] if report["settings"]["seconds"] < 120 else 60.0
  spans = trend(curve, span)
  for label, part in ((f"first {span:g} s, mean", "first"), (f"last {span:g} s, mean", "last"),
                      ("slope per minute", "slope_per_min")):
    cells = [label] + [("—" if spans[k][part] is None else f"{spans[k][part]:+.4f}" if part == "slope_per_min"
                        else f"{spans[k][part]:.3f}") for k in keys]
    lines.append("| " + " | ".join(cells) + " |")
  gen = ", ".join(f"{idn['generate_s']:.0f}" for idn in report["identities"])
  head = (f"{st['num']} test identities (seeds {', '.join(map(str, st['test_seeds']))}), one {st['seconds']:g} s "
          f"video each ({st['speech']} speech with pauses), {st['mode']} mode, {st['steps']} steps, "
          f"{st['resolution']}² px; measures per {st['window_s']:g} s window, mean over the identities (range); "
          f"— : no pause / no clip boundary in that window. Generation wall s per identity: {gen}.")
  return "\n".join([head, "", *lines]) + "\n"


def plot_drift(report: dict, path: str) -> None:
  """The drift curve as a PNG: one panel per measure against the window's end in minutes, a thin line per
  identity, the mean over them thick, the ground truth's value dashed where there is one."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  cols = 3
  fig, axes = plt.subplots(-(-(len(DRIFT_PANELS) + 1) // cols), cols, figsize=(4.2 * cols, 5.6), squeeze=False)

  def line(ax, curve, key, **style):
    points = [(end / 60, v) for end, v in zip(curve["end_s"], curve[key]) if v is not None]
    if points:
      ax.plot(*zip(*points), **style)

  for ax, (key, truth) in zip(axes.flat, DRIFT_PANELS):
    for j, idn in enumerate(report["identities"]):
      line(ax, idn["windows"], key, color=f"C{j}", linewidth=0.8, alpha=0.6, label=f"seed {idn['seed']}")
    line(ax, report["mean"], key, color="black", linewidth=1.8, label="mean")
    if truth is not None:
      line(ax, report["mean"], truth, color="grey", linewidth=1.0, linestyle="--", label="ground truth")
    ax.set_title(DRIFT_LABELS[key], fontsize=9)
    ax.set_xlabel(f"minutes ({report['settings']['window_s']:g} s windows)")
  handles, labels = axes.flat[0].get_legend_handles_labels()
  for ax in axes.flat[len(DRIFT_PANELS):]:
    ax.axis("off")
  axes.flat[-1].legend(handles, labels, loc="center", fontsize=9, title="test identity")
  fig.tight_layout()
  with atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=120, format="png")
  plt.close(fig)


def write_json(obj: dict, path: str) -> None:
  """``obj`` as indented JSON, written atomically (NaN is written as null: the files are strict JSON)."""
  def clean(x):
    if isinstance(x, dict):
      return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
      return [clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
      return _nan_to_none(float(x))
    if isinstance(x, np.integer):
      return int(x)
    return x

  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      json.dump(clean(obj), f, indent=1, sort_keys=True, allow_nan=False)


def write_drift_report(report: dict, out: str) -> list[str]:
  """``out`` (JSON), its .md table and its .png figure beside it; the paths written."""
  stem = out[:-5] if out.endswith(".json") else out
  write_json(report, out)
  with atomic_path(stem + ".md") as tmp:
    with open(tmp, "w") as f:
      f.write(drift_markdown(report))
  plot_drift(report, stem + ".png")
  return [out, stem + ".md", stem + ".png"]


# ---------------------------------------------------------------------------------------------
# Quality against sampling steps (Fig. 3) on the demo's measures


class _TimedPipeline:
  """``pipe`` whose ``generate`` adds up its wall seconds, denoiser seconds, calls and ANS clips (what
  :func:`steps_curve` reports per clip); everything else is the pipeline's."""

  def __init__(self, pipe):
    self._pipe = pipe
    self.wall_s = self.denoise_s = self.video_s = 0.0
    self.calls = self.clips = 0

  def __getattr__(self, name):
    return getattr(self._pipe, name)

  def generate(self, image, audio, **kwargs):
    t0 = time.perf_counter()
    video = self._pipe.generate(image, audio, **kwargs)
    self.wall_s += time.perf_counter() - t0
    self.denoise_s += self._pipe.timings.denoise
    self.video_s += len(video) / self._pipe.config.fps
    self.calls += 1
    self.clips += sampling.num_clips(sampling.latent_frames_for_video(len(video)), self._pipe.config.clip_frames)
    return video


def steps_curve(pipe, *, steps: Sequence[int] = STEPS, num: int = 8, seconds: float = 8.0, first: int = 100,
                seed: int = 0, ckpt: str = "", progress=True, **sample) -> dict:
  """Fig. 3 on the demo: :func:`demo.evaluate` (light) of test clips ``first … first + num − 1`` at each step
  count, timed. Each count first generates one clip untimed (its programs compile there), so the wall seconds
  are a warm run's; they cover every generation of the evaluation (the clip's own speech and the other-audio
  control), per ANS clip as ``scripts/evaluate.py`` counts them and per video. Returns the Fig. 3 report of
  :func:`read_jax.eval.suite.write_steps_report`: ``{"ckpt", "ckpt_id", "steps", "runs": {str(s): {"metrics",
  "generation", "summary", "clips"}}, "settings"}``."""
  size = pipe.config.resolution
  warm = synthetic.make_clip(next(iter(synthetic.split_seeds("test", 1, first))), seconds, size)
  warm_portrait = synthetic.render_face(warm.identity, mouth_open=0.0, size=size)
  runs = {}
  t_all = time.perf_counter()
  for s in (cli.progress(list(steps), desc="steps", unit="count") if progress else steps):
    pipe.generate(warm_portrait, warm.audio, steps=s, seed=seed, **sample)
    timed = _TimedPipeline(pipe)
    result = demo.evaluate(timed, num=num, seconds=seconds, first=first, seed=seed, progress=progress, light=True,
                           steps=s, **sample)
    summary = result["summary"]
    generation = {"videos": timed.calls, "clips": timed.clips, "video_s": timed.video_s, "wall_s": timed.wall_s,
                  "wall_s_per_clip": timed.wall_s / timed.clips, "denoise_s_per_clip": timed.denoise_s / timed.clips,
                  "wall_s_per_video": timed.wall_s / timed.calls, "real_time_factor": timed.wall_s / timed.video_s,
                  "steps": s}
    runs[str(s)] = {"metrics": {k: summary[k] for k in STEPS_METRICS if k in summary}, "generation": generation,
                    "summary": summary, "clips": result["clips"]}
  settings = {"num": num, "seconds": seconds, "first": first, "seed": seed, "sample": dict(sample),
              "resolution": size, "mode": sample.get("mode", pipe.config.mode), "wall_s": time.perf_counter() - t_all}
  return {"ckpt": ckpt, "ckpt_id": generate.ckpt_identity(ckpt) if ckpt else "", "steps": [int(s) for s in steps],
          "runs": runs, "settings": settings}


def write_steps_report(combined: dict, out: str) -> list[str]:
  """:func:`suite.write_steps_report` (its table and figure), then the JSON again as strict JSON (a clip without
  a pause has NaN in its silence scores)."""
  paths = suite.write_steps_report(combined, out)
  write_json(combined, out)
  return paths
