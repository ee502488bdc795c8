"""Long runs stay flat: minutes of speech through one ReadPipeline.write_video, the process's memory on the way.

  python scripts/bench.py long                                   # the bundled demo model: 1, 5 and 10 min of video
  python scripts/bench.py long --minutes 0.5,2 --source synthetic --json long.json

One generation of the longest ``--minutes`` (the bundled assets/demo/speech.wav tiled to that length, or
synthetic speech) streams into one mp4 through the production path, ``ReadPipeline.write_video`` (clips
sampled, decoded and piped to ffmpeg one by one). A thread samples the resident set (VmRSS of
/proc/self/status) every ``--interval`` s; at every mark of video written (each of ``--minutes``) the
current RSS and its anonymous part (RssAnon: heap and XLA buffers, without the mapped libraries), the
highest sample since the previous mark and the kernel's peak (VmHWM) are recorded with the wall time.
The highest sample per stretch is the figure to compare: VmHWM only ever rises, so the compile spike of
the first clip hides any later growth in it. Reported too: the slopes (MiB per minute of video) fitted
over every clip after the first mark, the memory after the writer has closed (the audio mux), and
whether the mp4 holds exactly F = floor(25 · s) frames (counted by decoding it, ``read_jax.media.probe``).
"""

from __future__ import annotations

import os
import resource
import tempfile
import threading
import time

import jax
import numpy as np

from read_jax import audio as audio_lib
from read_jax import cli, media
from read_jax.bench.timing import print_table
from read_jax.config import load_config
from read_jax.data import synthetic
from read_jax.errors import ConfigError
from read_jax.constants import FRAMES_PER_LATENT
from read_jax.pipeline import ReadPipeline

DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "assets",
                        "demo")
MIB = 2.0 ** 20
STAGES = ("speech_encoder", "speech_ae", "reference", "denoise", "vae_decode", "write")  # read_jax.pipeline.Timings


def add_args(p):
  p.add_argument("--ckpt", default=DEMO_DIR, help="read_jax checkpoint directory (unused with --config)")
  p.add_argument("--config", default="",
                 help="random weights of a config with every part (e.g. demo.py:tiny) instead of --ckpt")
  p.add_argument("--minutes", default="1,5,10", help="comma-separated marks, minutes of video; the run is the longest")
  p.add_argument("--source", default="tile", choices=("tile", "synthetic"),
                 help="tile: the checkpoint's speech.wav (else the bundled one) repeated; synthetic: "
                      "read_jax.data.synthetic speech")
  p.add_argument("--steps", type=int, default=None, help="denoiser passes per clip (None: the checkpoint's)")
  p.add_argument("--interval", type=float, default=0.25, help="seconds between RSS samples")
  p.add_argument("--video", default="", help="keep the mp4 here ('': a temporary file, deleted)")
  p.add_argument("--platform", default="cpu")


def memory_mib() -> dict:
  """The resident set now (VmRSS), its anonymous part (RssAnon: the heap, XLA's buffers; the rest is mapped
  files such as the shared libraries, which the kernel may drop and page in again) and its peak so far
  (VmHWM) in MiB, from /proc/self/status, and getrusage's ru_maxrss (the same peak, where /proc is missing)."""
  status = {}
  try:
    with open("/proc/self/status") as fh:
      for line in fh:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon"):
          status[key] = int(value.split()[0]) * 1024 / MIB  # the file counts kB
  except OSError:
    pass
  max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB  # kB on Linux
  return {"rss_mib": status.get("VmRSS", float("nan")), "anon_mib": status.get("RssAnon", float("nan")),
          "peak_mib": status.get("VmHWM", max_rss), "ru_maxrss_mib": max_rss}


class RssSampler:
  """VmRSS sampled every ``interval`` s on a daemon thread; :meth:`window_max` is the highest sample (and
  the current value) since its previous call, so a stretch's peak is seen even after an earlier spike."""

  def __init__(self, interval: float):
    self.interval = interval
    self._lock = threading.Lock()
    self._max = memory_mib()["rss_mib"]
    self.samples = 0  # samples taken so far (the thread's and window_max's)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

  def _loop(self):
    while not self._stop.wait(self.interval):
      self._sample()

  def _sample(self) -> float:
    rss = memory_mib()["rss_mib"]
    with self._lock:
      self._max = max(self._max, rss)
      self.samples += 1
    return rss

  def window_max(self) -> float:
    rss = self._sample()
    with self._lock:
      peak, self._max = self._max, rss
    return peak

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def long_speech(seconds: float, source: str, speech_wav: str) -> np.ndarray:
  """16 kHz speech [samples] of exactly ``seconds``: ``speech_wav`` tiled ("tile"), or one synthetic
  clip's speech ("synthetic", a held-out test seed)."""
  n = int(round(seconds * audio_lib.SAMPLE_RATE))
  if source == "tile":
    wave = audio_lib.load_audio(speech_wav)
    return np.tile(wave, -(-n // wave.shape[0]))[:n]
  seed = synthetic.split_seeds("test", 1)[0]
  return synthetic.make_clip(seed, seconds, size=8).audio[:n]


def parse_marks(arg: str) -> list[float]:
  """``--minutes`` "1,5,10" → [1.0, 5.0, 10.0], sorted; a ConfigError for anything but positive numbers."""
  try:
    marks = sorted(float(m) for m in arg.split(","))
  except ValueError:
    marks = []
  if not marks or marks[0] <= 0:
    raise ConfigError(f"--minutes: need comma-separated positive minutes, got {arg!r}")
  return marks


def measure(pipe: ReadPipeline, image, wav: str, video: str, num_video: int, marks: list[float], *,
            interval: float, steps: int | None) -> dict:
  """Generate ``wav`` (``num_video`` frames long) into ``video`` with ``pipe.write_video``, recording the memory
  at each of ``marks`` (minutes of video handed to the writer) and after every clip; returns the records."""
  c = pipe.config
  first_clip, per_clip = 1 + FRAMES_PER_LATENT * (c.clip_frames - 1), FRAMES_PER_LATENT * (c.clip_frames - 1)
  mark_frames = [int(m * 60 * c.fps) for m in marks]
  rows, series = [], []
  with RssSampler(interval) as sampler:
    start = memory_mib()
    sampler.window_max()
    bar = cli.progress(desc="long run", unit="clip")
    t0 = time.perf_counter()

    def progress(done, total):
      # Frames handed to the writer once this clip is in: clip 0 decodes 1 + 8(f − 1), each later one 8(f − 1).
      frames = min(num_video, first_clip + per_clip * (done - 1))
      now, mem = time.perf_counter() - t0, memory_mib()
      series.append([frames / c.fps / 60, now, mem["rss_mib"], mem["anon_mib"]])
      bar.total = total
      bar.update(done - bar.n)
      while len(rows) < len(marks) and frames >= mark_frames[len(rows)]:
        rows.append({"minutes": marks[len(rows)], "wall_s": now, "rss_mib": mem["rss_mib"], "anon_mib": mem["anon_mib"],
                     "window_max_mib": sampler.window_max(), "peak_mib": mem["peak_mib"],
                     "ru_maxrss_mib": mem["ru_maxrss_mib"]})

    timings = pipe.write_video(image, wav, video, steps=steps, progress=progress)
    bar.close()
    wall = time.perf_counter() - t0
    end = memory_mib()
  return {"marks": rows, "series": series, "timings": timings, "start": start, "end": end, "wall_s": wall}


def run(args) -> dict:
  """Prints the marks' table, the slopes and the frame check; returns them (``ok``: the frame count is exact)."""
  jax.config.update("jax_platforms", args.platform)
  marks = parse_marks(args.minutes)
  t0 = time.perf_counter()
  if args.config:
    pipe = ReadPipeline.from_config(jax.random.key(0), load_config(args.config))
  else:
    pipe = ReadPipeline.from_pretrained(args.ckpt)
  load_s = time.perf_counter() - t0
  c = pipe.config
  bundled = not args.config and os.path.isfile(os.path.join(args.ckpt, "reference.png"))
  image = os.path.join(args.ckpt, "reference.png") if bundled else synthetic.render_face(
      synthetic.make_identity(synthetic.split_seeds("test", 1)[0]), size=c.resolution)
  wave = long_speech(60 * marks[-1], args.source, os.path.join(args.ckpt if bundled else DEMO_DIR, "speech.wav"))
  seconds = wave.shape[0] / audio_lib.SAMPLE_RATE
  num_video = audio_lib.num_video_frames(wave.shape[0], c.fps)
  with tempfile.TemporaryDirectory() as tmp:
    wav = os.path.join(tmp, "speech.wav")
    media.write_wav(wav, wave, audio_lib.SAMPLE_RATE)
    del wave  # write_video loads the wav itself, as a user's run would
    video = args.video or os.path.join(tmp, "long.mp4")
    m = measure(pipe, image, wav, video, num_video, marks, interval=args.interval, steps=args.steps)
    info = media.probe(video)

  # Slopes over the clips after the first mark: the run is warm there (compiles done, buffers allocated).
  after = np.asarray([s for s in m["series"] if s[0] >= marks[0]] or m["series"])
  fit = len(after) > 2 and np.ptp(after[:, 0]) > 0
  slope, anon_slope = (float(np.polyfit(after[:, 0], after[:, i], 1)[0]) if fit else 0.0 for i in (2, 3))
  timings = m["timings"]
  result = {"config": {"model": args.config or args.ckpt, "resolution": c.resolution, "clip_frames": c.clip_frames,
                       "steps": args.steps or c.steps, "source": args.source, "seconds": seconds,
                       "platform": jax.default_backend()},
            "load_s": load_s, "wall_s": m["wall_s"], "rtf": m["wall_s"] / timings.video_seconds,
            "start": m["start"], "end": m["end"], "marks": m["marks"], "rss_slope_mib_per_min": slope,
            "anon_slope_mib_per_min": anon_slope, "clips": len(m["series"]),
            "series": [[round(v, 4 if i == 0 else 1) for i, v in enumerate(row)] for row in m["series"]],
            "frames": {"expected": num_video, "decoded": info["video_frames"],
                       "exact": info["video_frames"] == num_video, "audio_seconds": info["audio_seconds"]},
            "stages_s": {k: getattr(timings, k) for k in STAGES}}
  result["ok"] = result["frames"]["exact"]
  print(f"{args.config or args.ckpt}: {seconds / 60:g} min of {args.source} speech, {result['clips']} clips, "
        f"{c.resolution}² frames; jax on {jax.default_backend()}; "
        f"RSS {m['start']['rss_mib']:.0f} MiB before generating")
  print_table(m["marks"], ["minutes", "wall_s", "rss_mib", "anon_mib", "window_max_mib", "peak_mib"])
  print(f"after the writer closed: RSS {m['end']['rss_mib']:.0f} MiB, peak {m['end']['peak_mib']:.0f} MiB")
  print(f"slope after {marks[0]:g} min, MiB per minute of video: RSS {slope:+.2f}, anonymous {anon_slope:+.2f}; "
        f"wall {m['wall_s']:.0f} s (real-time factor {result['rtf']:.2f})")
  print(f"mp4: {info['video_frames']} frames decoded, {num_video} expected: "
        f"{'exact' if result['ok'] else 'MISMATCH'}; audio {info['audio_seconds']} s")
  return result
