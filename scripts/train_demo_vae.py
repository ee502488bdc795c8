#!/usr/bin/env python
"""Train the demo VAE (configs/demo_vae.py's model and loss) on synthetic frames drawn in memory, for a
fixed wall-clock budget, and write it in diffusers layout: the fast path for an accelerator.

  python scripts/train_demo_vae.py --out vae_dir --minutes 6          # then:
  python scripts/eval_demo.py --vae vae_dir                           # mouth r of its reconstructions
  python scripts/train_demo.py --vae vae_dir                          # uses it instead of training one

``--image-minutes`` first trains on single frames (batch ``--image-batch``), then inflates the params
for video (read_jax.models.vae.inflate_image_params), as scripts/train_demo.py does; 0 trains on
video from the start. At the end the reconstruction scores of scripts/eval_demo.py --vae (4 held-out
clips) are printed and written to train_log.json.

``--init DIR`` continues a trained VAE instead (e.g. ``assets/demo/vae``: its latents then change, so the
A2V-DiT must be retrained on them: ``train_demo.py --vae``); ``--motion-weight W`` weights the L1 of pixels
that move within a window by up to 1 + W (``read_jax.models.vae.training_loss``); ``--latent-channels``
overrides the config's.

It needs only jax/flax/optax and numpy (no data files, grain or ffmpeg): it draws ``--pool`` synthetic
clips of 6 s (``read_jax.data.synthetic.make_clip``, the same generator as the mp4 set) from the training
seeds up front, and each step takes random windows of them. ``scripts/train_demo.py`` trains the same model from the
mp4 set through the ordinary loop instead (slower per step on a CPU, resumable).
"""

import argparse
import importlib.util
import json
import os
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)  # configs/ and read_jax without an install


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="output VAE directory (diffusers layout)")
  parser.add_argument("--minutes", type=float, default=6.0, help="wall-clock budget of the video steps")
  parser.add_argument("--steps", type=int, default=0, help="stop the video steps at this many instead (0: --minutes)")
  parser.add_argument("--image-minutes", type=float, default=0.0, help="single-frame steps first (wall clock)")
  parser.add_argument("--image-batch", type=int, default=64, help="frames per single-frame step")
  parser.add_argument("--batch", type=int, default=16, help="clips per step")
  parser.add_argument("--frames", type=int, default=17, help="frames per clip (1 + 8k)")
  parser.add_argument("--lr", type=float, default=5e-4)
  parser.add_argument("--pool", type=int, default=512, help="synthetic clips drawn up front (6 s each)")
  parser.add_argument("--init", default="", help="start from this VAE (diffusers layout, e.g. assets/demo/vae)")
  parser.add_argument("--latent-channels", type=int, default=0, help="override the config's (0: keep it)")
  parser.add_argument("--motion-weight", type=float, default=0.0,
                      help="weight the L1 of pixels that move (read_jax.models.vae.training_loss)")
  args = parser.parse_args(argv)

  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  from read_jax.config import load_config
  from read_jax.convert.vae import export_vae, load_vae
  from read_jax.data import synthetic
  from read_jax.models.vae import (AutoencoderKLLTXVideo, inflate_image_params, to_pixels, training_loss,
                                   unit_latent_stats)

  config = load_config("demo_vae.py")
  if args.init and (args.latent_channels or args.image_minutes):
    parser.error("--init continues a trained VAE: it takes neither --latent-channels nor --image-minutes")
  if args.latent_channels:
    config.model.latent_channels = args.latent_channels
  model = AutoencoderKLLTXVideo.from_config({**config.model, "dtype": "float32", "param_dtype": "float32"})
  res, c = config.data.resolution, model.config.latent_channels
  buffers = unit_latent_stats(c)
  t0 = time.perf_counter()
  seeds = synthetic.split_seeds("train", args.pool)
  pool = np.stack([synthetic.make_clip(s, 6.0, res).frames for s in seeds])  # [P, 150, S, S, 3] uint8
  print(f"{args.pool} clips drawn in {time.perf_counter() - t0:.0f} s; jax {jax.default_backend()}", flush=True)

  if args.init:
    model, variables = load_vae(args.init)
    params, buffers = variables["params"], variables["buffers"]
  else:
    params = jax.jit(model.init)(jax.random.key(0, impl="rbg"), jnp.zeros((1, 1, res, res, 3)))["params"]
  schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, 20, 100_000, args.lr * 0.1)
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule, b2=0.99))
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, video, key):
    x = to_pixels(video)
    (loss, m), g = jax.value_and_grad(
        lambda p: training_loss(model, {"params": p, "buffers": buffers}, x, key, kl_weight=config.loss.kl_weight,
                                sample_posterior=config.loss.sample_posterior, motion_weight=args.motion_weight),
        has_aux=True)(params)
    updates, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, updates), opt, m

  rng = np.random.default_rng(0)
  log, n = [], 0

  def run(minutes, batch, frames, steps=0):
    nonlocal params, opt, n
    start, first = time.perf_counter(), n
    while (n - first < steps) if steps else (time.perf_counter() - start < 60 * minutes):
      idx = rng.integers(0, args.pool, batch)
      t = rng.integers(0, pool.shape[1] - frames + 1, batch)
      video = np.stack([pool[i, s:s + frames] for i, s in zip(idx, t)])
      params, opt, m = step(params, opt, jnp.asarray(video), jax.random.key(n))
      n += 1
      if n % 250 == 0:
        m = {k: float(v) for k, v in m.items()}
        log.append({"step": n, "frames": frames, "s": time.perf_counter() - start, **m})
        print(json.dumps(log[-1]), flush=True)

  start = time.perf_counter()
  if args.image_minutes > 0:
    run(args.image_minutes, args.image_batch, 1)
    params = inflate_image_params(params, model.config)
    opt = tx.init(params)  # the moments of the single-frame steps do not fit the inflated taps
  image_steps = n
  run(args.minutes, args.batch, args.frames, args.steps)
  export_vae(model, {"params": jax.tree.map(np.asarray, params), "buffers": buffers}, args.out)
  print(f"{n} steps ({image_steps} single-frame) in {time.perf_counter() - start:.0f} s → {args.out}", flush=True)
  spec = importlib.util.spec_from_file_location("_eval_demo", os.path.join(_ROOT, "scripts", "eval_demo.py"))
  eval_demo = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(eval_demo)
  scores = eval_demo.evaluate_vae(eval_demo.vae_reconstructor(args.out), num=4, seconds=4.0, size=res)["summary"]
  print(f"held-out reconstructions: PSNR {scores['psnr']:.2f} dB, mouth r {scores['mouth_r']:.3f} "
        f"(one opening per latent frame: {scores['mouth_r_latent_frame_average']:.3f})")
  with open(os.path.join(args.out, "train_log.json"), "w") as fh:
    json.dump({"steps": n, "image_steps": image_steps, "batch": args.batch, "image_batch": args.image_batch,
               "frames": args.frames, "lr": args.lr, "init": args.init, "motion_weight": args.motion_weight,
               "latent_channels": model.config.latent_channels, "eval": scores, "log": log}, fh, indent=1)


if __name__ == "__main__":
  main()
