#!/usr/bin/env python
"""Generate a talking-head video from one portrait and a speech recording.

  python scripts/sample.py                                   # the bundled demo model and inputs → out.mp4
  python scripts/sample.py --ref face.png --audio speech.wav --out out.mp4 --ckpt DIR [--steps 8]
         [--cfg split|joint|none] [--alpha 2] [--beta 6] [--solver euler|heun] [--seed 0] [--dtype bfloat16]
  python scripts/sample.py --ckpt STUDENT --steps 2          # a distilled student: one pass per step, no CFG branches
  python scripts/sample.py --live                            # the audio fed at real speed, as a microphone would
                                                             # (the bundled live model: the causal student)

Prints a progress bar over clips and a final line with video seconds, wall seconds and the
real-time factor. With --live, the audio goes into a live session (read_jax.live) in 20 ms chunks at the
speed it would be spoken; each block's latency (when it came out minus when its frames' speech was spoken)
is printed, then one line ``latency: first frame X s, worst Y s, mean Z s``. Compiled programs are kept
in a persistent cache (~/.cache/read_jax/jax, or $READ_JAX_CACHE), so a second run compiles nothing.

Every input is checked before the model loads; a bad one gives one error line
and exit code 2. An existing --out is replaced only once the new video is complete (Ctrl-C or
SIGTERM leave it as it was: exit code 130 / 143).
"""

import os
import time

import jax.numpy as jnp

from read_jax import audio, cli, live, media
from read_jax.ans.guidance import CFG_MODES
from read_jax.ans.solvers import SOLVERS
from read_jax.convert import checkpoint_dir
from read_jax.errors import CheckpointError
from read_jax.pipeline import ReadPipeline, check_checkpoint_sampling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "assets", "demo")
DEMO_LIVE = os.path.join(ROOT, "assets", "demo_live")  # the demo's causal 2-step student, its live model


def main(argv=None) -> int:
  p = cli.parser(__doc__)
  p.add_argument("--ref", default=os.path.join(DEMO, "reference.png"), help="reference portrait (any size/mode)")
  p.add_argument("--audio", default=os.path.join(DEMO, "speech.wav"),
                 help="speech audio (wav, flac, mp3, m4a, ... or a video's sound track)")
  p.add_argument("--out", default="out.mp4", help="output mp4 (written atomically)")
  p.add_argument("--ckpt", default=None, help="read_jax checkpoint directory (default: the bundled demo model; "
                 "with --live or --mode causal its live model, assets/demo_live)")
  p.add_argument("--steps", type=int, default=None, help="solver steps per clip (default: the checkpoint's, 8)")
  p.add_argument("--cfg", choices=CFG_MODES, default=None,
                 help="classifier-free guidance mode (default: the checkpoint's; distilled: a distilled student's one pass)")
  p.add_argument("--alpha", type=float, default=None, help="reference (split) / joint guidance scale (paper: 2)")
  p.add_argument("--beta", type=float, default=None, help="speech guidance scale for split CFG (paper: 6)")
  p.add_argument("--solver", choices=tuple(SOLVERS), default=None,
                 help="ODE solver (default: the checkpoint's, euler; heun: 2nd order, 2 denoiser passes a step)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="compute dtype of every model (bfloat16 on accelerators)")
  p.add_argument("--live", action="store_true", help="feed the audio into a live session at real speed")
  p.add_argument("--mode", choices=("clip", "rolling", "causal"), default=None,
                 help="clip: ANS clips; rolling: a window advancing one latent frame (0.32 s) at a time, for low "
                      "latency; causal: the same through a causal model's KV cache, the new frame alone (default: "
                      "the checkpoint's mode, with --live its live_mode)")
  p.add_argument("--noisy", type=int, default=None, help="rolling: noisy frames in the window (default: the checkpoint's)")
  p.add_argument("--no-cache", action="store_true", help="no persistent compilation cache")
  args = p.parse_args(argv)
  if args.ckpt is None:
    live_model = (args.live and args.mode in (None, "causal")) or args.mode == "causal"
    args.ckpt = DEMO_LIVE if live_model and os.path.isdir(DEMO_LIVE) else DEMO

  # The cheap checks (headers, a temp file in the output folder) before the model loads.
  if not os.path.isdir(args.ckpt):
    raise CheckpointError(f"--ckpt {args.ckpt}: no such checkpoint directory")
  checkpoint_dir.check_complete(args.ckpt)
  check_checkpoint_sampling(args.ckpt, args.steps, args.cfg, args.noisy)  # e.g. a step count a distilled student refuses
  media.check_image(args.ref)
  audio.check_audio_file(args.audio)
  media.check_output_path(args.out)

  cli.compilation_cache("off" if args.no_cache else None)
  pipe = ReadPipeline.from_pretrained(args.ckpt, dtype=getattr(jnp, args.dtype))
  if args.live:
    return _live(pipe, args)
  start = time.perf_counter()
  with cli.progress(total=None, unit="clip", desc="generating") as bar:
    def progress(done, total):
      bar.total = total
      bar.update(done - bar.n)

    timings = pipe.write_video(args.ref, args.audio, args.out, steps=args.steps, cfg=args.cfg, alpha=args.alpha,
                               beta=args.beta, solver=args.solver, seed=args.seed, progress=progress, mode=args.mode,
                               noisy=args.noisy)
  wall = time.perf_counter() - start
  video = timings.video_seconds
  print(f"wrote {args.out}: {video:.2f} s of video in {wall:.2f} s wall "
        f"(real-time factor {wall / max(video, 1e-9):.2f}; < 1 is faster than real time)")
  return 0


def _live(pipe: ReadPipeline, args) -> int:
  wave = audio.load_audio(args.audio)
  session_mode = args.mode or pipe.config.live_mode

  def on_block(block, latencies):
    print(f"{'clip' if session_mode == 'clip' else 'block'} {block.index}: frames {block.first_frame}–{block.first_frame + block.frames.shape[0] - 1}, "
          f"latency {latencies.min():.2f}–{latencies.max():.2f} s", flush=True)

  stats = live.run_live(pipe, args.ref, wave, args.out, realtime=True, on_block=on_block, steps=args.steps,
                        cfg=args.cfg, alpha=args.alpha, beta=args.beta, solver=args.solver, seed=args.seed,
                        mode=args.mode, noisy=args.noisy)
  print(f"wrote {args.out}: {stats.frames / pipe.config.fps:.2f} s of video, live, in {stats.wall:.2f} s wall")
  print(f"latency: first frame {stats.first:.2f} s, worst {stats.worst:.2f} s, mean {stats.mean:.2f} s")
  return 0


if __name__ == "__main__":
  cli.exit(cli.run(main))
