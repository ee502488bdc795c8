"""The demo VAE trained in memory for a wall-clock budget: the fast path for an accelerator (scripts/train_demo_vae.py).

configs/demo_vae.py's model and loss, on synthetic frames drawn in memory, written in diffusers layout.
``image_minutes`` first trains on single frames (batch ``image_batch``), then inflates the params for video
(read_jax.models.vae.inflate_image_params), as the demo build does; 0 trains on video from the start. At the
end the reconstruction scores of read_jax.eval.demo.evaluate_vae (4 held-out clips) are printed and written to
``train_log.json``.

``init`` continues a trained VAE instead (e.g. ``assets/demo/vae``: its latents then change, so the A2V-DiT
must be retrained on them: ``train_demo.py --vae``); ``motion_weight`` W weights the L1 of pixels that move
within a window by up to 1 + W (``read_jax.models.vae.training_loss``); ``latent_channels`` overrides the
config's.

It needs only jax/flax/optax and numpy (no data files, grain or ffmpeg): it draws ``pool`` synthetic clips of
6 s (``read_jax.data.synthetic.make_clip``, the same generator as the mp4 set) from the training seeds up
front, and each step takes random windows of them. The demo build (read_jax/demo/build.py) trains the same
model from the mp4 set through the ordinary loop instead (slower per step on a CPU, resumable).
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from read_jax.config import load_config
from read_jax.convert.vae import export_vae, load_vae
from read_jax.data import synthetic
from read_jax.errors import ConfigError
from read_jax.eval.demo import evaluate_vae, vae_reconstructor
from read_jax.files import atomic_path
from read_jax.models.vae import AutoencoderKLLTXVideo, inflate_image_params, to_pixels, training_loss, unit_latent_stats

POOL_CLIP_SECONDS = 6.0  # length of each synthetic clip drawn up front


def train_vae(out: str, *, minutes: float = 6.0, steps: int = 0, image_minutes: float = 0.0, image_batch: int = 64,
              batch: int = 16, frames: int = 17, lr: float = 5e-4, pool: int = 512, init: str = "",
              latent_channels: int = 0, motion_weight: float = 0.0) -> dict:
  """Train (module docstring) and write the VAE to ``out``; returns what ``out``/train_log.json holds.

  ``minutes``: wall-clock budget of the video steps, or ``steps`` of them when > 0; ``frames``: per clip
  (1 + 8k); ``pool``: clips drawn up front.
  """
  if init and (latent_channels or image_minutes):
    raise ConfigError("--init continues a trained VAE: it takes neither --latent-channels nor --image-minutes")
  config = load_config("demo_vae.py")
  if latent_channels:
    config.model.latent_channels = latent_channels
  model = AutoencoderKLLTXVideo.from_config({**config.model, "dtype": "float32", "param_dtype": "float32"})
  res, c = config.data.resolution, model.config.latent_channels
  buffers = unit_latent_stats(c)
  t0 = time.perf_counter()
  seeds = synthetic.split_seeds("train", pool)
  clips = np.stack([synthetic.make_clip(s, POOL_CLIP_SECONDS, res).frames for s in seeds])  # [P, 150, S, S, 3] uint8
  print(f"{pool} clips drawn in {time.perf_counter() - t0:.0f} s; jax {jax.default_backend()}", flush=True)

  if init:
    model, variables = load_vae(init)
    params, buffers = variables["params"], variables["buffers"]
  else:
    params = jax.jit(model.init)(jax.random.key(0, impl="rbg"), jnp.zeros((1, 1, res, res, 3)))["params"]
  schedule = optax.warmup_cosine_decay_schedule(0.0, lr, 20, 100_000, lr * 0.1)
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule, b2=0.99))
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, video, key):
    x = to_pixels(video)
    (loss, m), g = jax.value_and_grad(
        lambda p: training_loss(model, {"params": p, "buffers": buffers}, x, key, kl_weight=config.loss.kl_weight,
                                sample_posterior=config.loss.sample_posterior, motion_weight=motion_weight),
        has_aux=True)(params)
    updates, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, updates), opt, m

  rng = np.random.default_rng(0)
  log, n = [], 0

  def run(minutes, batch, frames, steps=0):
    nonlocal params, opt, n
    start, first = time.perf_counter(), n
    while (n - first < steps) if steps else (time.perf_counter() - start < 60 * minutes):
      idx = rng.integers(0, pool, batch)
      t = rng.integers(0, clips.shape[1] - frames + 1, batch)
      video = np.stack([clips[i, s:s + frames] for i, s in zip(idx, t)])
      params, opt, m = step(params, opt, jnp.asarray(video), jax.random.key(n))
      n += 1
      if n % 250 == 0:
        m = {k: float(v) for k, v in m.items()}
        log.append({"step": n, "frames": frames, "s": time.perf_counter() - start, **m})
        print(json.dumps(log[-1]), flush=True)

  start = time.perf_counter()
  if image_minutes > 0:
    run(image_minutes, image_batch, 1)
    params = inflate_image_params(params, model.config)
    opt = tx.init(params)  # the moments of the single-frame steps do not fit the inflated taps
  image_steps = n
  run(minutes, batch, frames, steps)
  export_vae(model, {"params": jax.tree.map(np.asarray, params), "buffers": buffers}, out)
  print(f"{n} steps ({image_steps} single-frame) in {time.perf_counter() - start:.0f} s → {out}", flush=True)
  scores = evaluate_vae(vae_reconstructor(out), num=4, seconds=4.0, size=res)["summary"]
  print(f"held-out reconstructions: PSNR {scores['psnr']:.2f} dB, mouth r {scores['mouth_r']:.3f} "
        f"(one opening per latent frame: {scores['mouth_r_latent_frame_average']:.3f})")
  result = {"steps": n, "image_steps": image_steps, "batch": batch, "image_batch": image_batch, "frames": frames,
            "lr": lr, "init": init, "motion_weight": motion_weight, "latent_channels": model.config.latent_channels,
            "eval": scores, "log": log}
  with atomic_path(os.path.join(out, "train_log.json")) as tmp:
    with open(tmp, "w") as fh:
      json.dump(result, fh, indent=1)
  return result
