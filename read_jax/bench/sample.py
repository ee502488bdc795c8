"""Real-time factor of generation on this machine, split by stage, and compile time vs run time.

Builds the model of ``--config`` (default configs/demo.py:tiny, random weights) and generates
``--seconds`` of video from synthetic speech: once cold (compiles included), then warm. Reports
seconds per stage (Whisper, SpeechAE, reference encode, denoiser, VAE decode, mp4 write) and the
real-time factor (wall / video seconds; < 1 is faster than real time).
"""

from __future__ import annotations

import os
import tempfile
import time

import jax

from read_jax import media
from read_jax.bench.timing import print_table
from read_jax.config import load_config
from read_jax.data.synthetic import make_clip
from read_jax.pipeline import ReadPipeline

STAGES = ("speech_encoder", "speech_ae", "reference", "denoise", "vae_decode", "write")


def add_args(p):
  p.add_argument("--config", default="demo.py:tiny", help="a config with vae/whisper/speech_ae/dit/pipeline sections")
  p.add_argument("--ckpt", default="", help="a read_jax checkpoint directory instead of random weights")
  p.add_argument("--seconds", type=float, default=10.0, help="audio length")
  p.add_argument("--steps", type=int, default=8, help="denoiser passes per clip")
  p.add_argument("--cfg", default="split", choices=("split", "joint", "none"))
  p.add_argument("--platform", default="cpu")


def run(args) -> dict:
  """Prints the table; returns its rows (seconds per stage, wall, real-time factor) and the compile estimate."""
  jax.config.update("jax_platforms", args.platform)
  if args.ckpt:
    pipe = ReadPipeline.from_pretrained(args.ckpt)
  else:
    pipe = ReadPipeline.from_config(jax.random.key(0), load_config(args.config))
  clip = make_clip(seed=123, seconds=args.seconds, size=pipe.config.resolution)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    wav = os.path.join(tmp, "speech.wav")
    media.write_wav(wav, clip.audio, clip.sample_rate)
    for label in ("cold (compiles)", "warm"):
      t0 = time.perf_counter()
      timings = pipe.write_video(clip.frames[0], wav, os.path.join(tmp, "out.mp4"), steps=args.steps, cfg=args.cfg)
      wall = time.perf_counter() - t0
      row = {"run": label, **{s: getattr(timings, s) for s in STAGES}, "wall": wall,
             "video_s": timings.video_seconds, "rtf": wall / timings.video_seconds}
      rows.append(row)
  print(f"config {args.ckpt or args.config}; {args.seconds:g} s of audio, {args.steps} steps, cfg={args.cfg}, "
        f"{pipe.config.resolution}² frames, jax on {jax.default_backend()}")
  print_table(rows, ["run", *STAGES, "wall", "video_s", "rtf"])
  cold, warm = rows
  print(f"compile ≈ {cold['wall'] - warm['wall']:.2f} s; warm real-time factor {warm['rtf']:.3f} "
        f"({'faster' if warm['rtf'] < 1 else 'slower'} than real time)")
  return {"config": {"model": args.ckpt or args.config, "seconds": args.seconds, "steps": args.steps, "cfg": args.cfg,
                     "resolution": pipe.config.resolution, "platform": jax.default_backend()},
          "runs": rows, "compile_s": cold["wall"] - warm["wall"], "warm_rtf": warm["rtf"]}
