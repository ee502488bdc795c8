#!/usr/bin/env python
"""Train the demo VAE (configs/demo_vae.py's model and loss) on synthetic frames drawn in memory, for a
fixed wall-clock budget, and write it in diffusers layout: the fast path for an accelerator.

  python scripts/train_demo_vae.py --out vae_dir --minutes 6          # then:
  python scripts/train_demo.py --vae vae_dir                          # uses it instead of training one

It needs only jax/flax/optax and numpy (no data files, grain or ffmpeg): every step draws fresh
synthetic clips (``read_jax.data.synthetic.make_clip``, the same generator as the mp4 set) from the
training seeds, so nothing is read twice. ``scripts/train_demo.py`` trains the same model from the
mp4 set through the ordinary loop instead (slower per step on a CPU, resumable).
"""

import argparse
import json
import os
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)  # configs/ and read_jax without an install


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="output VAE directory (diffusers layout)")
  parser.add_argument("--minutes", type=float, default=6.0, help="training wall-clock budget")
  parser.add_argument("--batch", type=int, default=16, help="clips per step")
  parser.add_argument("--frames", type=int, default=17, help="frames per clip (1 + 8k)")
  parser.add_argument("--lr", type=float, default=5e-4)
  parser.add_argument("--pool", type=int, default=512, help="synthetic clips drawn up front (6 s each)")
  args = parser.parse_args(argv)

  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  from read_jax.config import load_config
  from read_jax.convert.vae import export_vae
  from read_jax.data import synthetic
  from read_jax.models.vae import AutoencoderKLLTXVideo, to_pixels, training_loss, unit_latent_stats

  config = load_config("demo_vae.py")
  model = AutoencoderKLLTXVideo.from_config({**config.model, "dtype": "float32", "param_dtype": "float32"})
  res, c = config.data.resolution, model.config.latent_channels
  buffers = unit_latent_stats(c)
  t0 = time.perf_counter()
  seeds = synthetic.split_seeds("train", args.pool)
  pool = np.stack([synthetic.make_clip(s, 6.0, res).frames for s in seeds])  # [P, 150, S, S, 3] uint8
  print(f"{args.pool} clips drawn in {time.perf_counter() - t0:.0f} s; jax {jax.default_backend()}", flush=True)

  params = jax.jit(model.init)(jax.random.key(0, impl="rbg"), jnp.zeros((1, 1, res, res, 3)))["params"]
  schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, 20, 100_000, args.lr * 0.1)
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule, b2=0.99))
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, video, key):
    x = to_pixels(video)
    (loss, m), g = jax.value_and_grad(
        lambda p: training_loss(model, {"params": p, "buffers": buffers}, x, key, kl_weight=config.loss.kl_weight,
                                sample_posterior=config.loss.sample_posterior), has_aux=True)(params)
    updates, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, updates), opt, m

  rng = np.random.default_rng(0)
  log, n, start = [], 0, time.perf_counter()
  while time.perf_counter() - start < 60 * args.minutes:
    idx = rng.integers(0, args.pool, args.batch)
    t = rng.integers(0, pool.shape[1] - args.frames + 1, args.batch)
    video = np.stack([pool[i, s:s + args.frames] for i, s in zip(idx, t)])
    params, opt, m = step(params, opt, jnp.asarray(video), jax.random.key(n))
    n += 1
    if n % 250 == 0:
      m = {k: float(v) for k, v in m.items()}
      log.append({"step": n, "s": time.perf_counter() - start, **m})
      print(json.dumps(log[-1]), flush=True)
  export_vae(model, {"params": jax.tree.map(np.asarray, params), "buffers": buffers}, args.out)
  with open(os.path.join(args.out, "train_log.json"), "w") as fh:
    json.dump({"steps": n, "batch": args.batch, "frames": args.frames, "lr": args.lr, "log": log}, fh, indent=1)
  print(f"{n} steps in {time.perf_counter() - start:.0f} s → {args.out}")


if __name__ == "__main__":
  main()
