"""The demo VAE trained in memory for a wall-clock budget: the fast path for an accelerator (scripts/train_demo_vae.py).

A driver of the VAE training stage (read_jax/train/vae_stage.py): configs/demo_vae.py's model and loss, the
stage's ``loss_fn`` and the loop's ``train_step`` (read_jax/train/loop.py, with read_jax/train/optim.py's
optimizer), so the in-memory path and ``scripts/train.py --config demo_vae.py`` take the same step. What this
driver adds is the data and the clock: it draws ``pool`` synthetic clips of 6 s up front
(``read_jax.data.synthetic.make_clip``, the same generator as the mp4 set) from the training seeds, each step takes
random windows of them, and it stops after ``minutes`` of steps (or ``steps``). It needs only jax/flax/optax and
numpy (no data files, grain or ffmpeg).

``image_minutes`` first trains on single frames (batch ``image_batch``), then inflates the params for video
(read_jax.models.vae.inflate_image_params), as the demo build does; 0 trains on video from the start. ``init``
continues a trained VAE instead (e.g. ``assets/demo/vae``: its latents then change, so the A2V-DiT must be
retrained on them: ``train_demo.py --vae``), unless ``causal``: then its decoder is fine-tuned causal for
streaming decode (configs/demo_vae.py:causal: the encoder frozen, so the latents and the A2V-DiT stay as they
are). ``motion_weight`` W weights the L1 of pixels that move within a window by up to 1 + W
(``read_jax.models.vae.training_loss``); ``latent_channels`` overrides the config's.

At the end the VAE is written in diffusers layout (with ``init``'s latent statistics) and scored on held-out
clips (:func:`vae_scores`), with ``init`` scored beside it; the scores and the loss log go to
``train_log.json``. The demo build (read_jax/demo/build.py) trains the same model from the mp4 set through the
ordinary loop instead (slower per step on a CPU, resumable).
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.config import load_config
from read_jax.convert.vae import export_vae, load_vae
from read_jax.data import synthetic
from read_jax.errors import ConfigError
from read_jax.eval import talking
from read_jax.eval.demo import evaluate_vae, vae_reconstructor
from read_jax.files import atomic_path
from read_jax.models.vae import inflate_image_params, unit_latent_stats
from read_jax.train import optim
from read_jax.train.loop import train_step
from read_jax.train.state import TrainState
from read_jax.train.vae_stage import VAEStage

POOL_CLIP_SECONDS = 6.0  # length of each synthetic clip drawn up front
SCHEDULE_STEPS = 100_000  # the learning rate's cosine horizon: a budget run stops long before (nearly constant lr)


def demo_vae_config(*, batch: int, frames: int, lr: float, init: str = "", latent_channels: int = 0,
                    motion_weight: float = 0.0, causal: bool = False):
  """configs/demo_vae.py (``:causal`` with ``causal``) with this driver's settings: ``batch`` clips of ``frames``
  frames per step, peak learning rate ``lr`` after 20 warm-up steps, the schedule's horizon SCHEDULE_STEPS."""
  config = load_config("demo_vae.py" + (":causal" if causal else ""))
  config.data.batch_size, config.data.num_frames = batch, frames
  config.train.update(dict(lr=lr, steps=SCHEDULE_STEPS, warmup_steps=20, end_lr_fraction=0.1))
  config.loss.motion_weight = motion_weight
  if init or not causal:
    config.init_checkpoint = init
  if latent_channels:
    config.model.latent_channels = latent_channels
  return config


def vae_scores(path: str, *, num: int = 4, seconds: float = 4.0, size: int = 64) -> dict:
  """``read_jax.eval.demo.evaluate_vae``'s reconstruction scores of the VAE at ``path`` (PSNR, mouth r) on held-out
  clips, plus the latent-boundary ratio of the reconstructions (mean |frame difference| across latent-frame
  edges / within latent frames, ``read_jax.eval.talking.boundary_ratio``; 1 = no seam) and of the true clips."""
  reconstruct = vae_reconstructor(path)
  ratios, truth = [], []

  def scored(frames):
    y = np.clip(reconstruct(frames), -1, 1)
    bounds = talking.latent_boundaries(len(frames))
    ratios.append(talking.boundary_ratio(y, bounds))
    truth.append(talking.boundary_ratio(frames, bounds))
    return y

  scores = evaluate_vae(scored, num=num, seconds=seconds, size=size, progress=False)
  scores["summary"].update(boundary_ratio_latent=float(np.mean(ratios)), boundary_ratio_latent_truth=float(
      np.mean(truth)))
  for row, r in zip(scores["clips"], ratios):
    row["boundary_ratio_latent"] = r
  return scores


def train_vae(out: str, *, minutes: float = 6.0, steps: int = 0, image_minutes: float = 0.0, image_batch: int = 64,
              batch: int = 16, frames: int = 17, lr: float = 5e-4, pool: int = 512, init: str = "",
              latent_channels: int = 0, motion_weight: float = 0.0, causal: bool = False,
              eval_clips: int = 4, eval_seconds: float = 4.0) -> dict:
  """Train (module docstring) and write the VAE to ``out``; returns what ``out``/train_log.json holds.

  ``minutes``: wall-clock budget of the video steps, or ``steps`` of them when > 0; ``frames``: per clip
  (1 + 8k); ``pool``: clips drawn up front; ``eval_clips`` held-out clips of ``eval_seconds`` score the result.
  """
  if init and (latent_channels or image_minutes):
    raise ConfigError("--init continues a trained VAE: it takes neither --latent-channels nor --image-minutes")
  if causal and (latent_channels or image_minutes):
    raise ConfigError("--causal fine-tunes a trained VAE's decoder: it takes neither --latent-channels nor "
                      "--image-minutes")
  config = demo_vae_config(batch=batch, frames=frames, lr=lr, init=init, latent_channels=latent_channels,
                           motion_weight=motion_weight, causal=causal)
  stage = VAEStage(config)
  res = config.data.resolution
  t0 = time.perf_counter()
  seeds = synthetic.split_seeds("train", pool)
  clips = np.stack([synthetic.make_clip(s, POOL_CLIP_SECONDS, res).frames for s in seeds])  # [P, 150, S, S, 3] uint8
  print(f"{pool} clips drawn in {time.perf_counter() - t0:.0f} s; jax {jax.default_backend()}", flush=True)

  buffers = unit_latent_stats(stage.model.config.latent_channels)
  if config.init_checkpoint:
    buffers = load_vae(config.init_checkpoint)[1]["buffers"]  # the latents' statistics (kept by a frozen encoder)
    fresh = jax.eval_shape(stage.init, jax.random.key(0), stage.batch_spec())
    params = stage.adapt_init_params(jax.tree.map(jnp.asarray, stage.init_from_checkpoint(config.init_checkpoint,
                                                                                          fresh)))
  else:
    spec = stage.batch_spec()
    params = jax.jit(lambda k: stage.init(k, spec))(jax.random.key(config.seed))  # (an rbg key inside)
  frozen = stage.trainable(params) is not None
  tx, schedule = optim.make_optimizer(config.train, stage.trainable if frozen else None)
  state = TrainState.create(params, tx)
  step = jax.jit(functools.partial(train_step, stage=stage, tx=tx, schedule=schedule, accum_steps=1))
  key = jax.random.key(config.seed)
  rng = np.random.default_rng(0)
  log = []

  def run(minutes, batch, frames, steps=0):
    nonlocal state
    start, first = time.perf_counter(), int(state.step)
    n = first
    while (n - first < steps) if steps else (time.perf_counter() - start < 60 * minutes):
      idx = rng.integers(0, pool, batch)
      t = rng.integers(0, clips.shape[1] - frames + 1, batch)
      video = np.stack([clips[i, s:s + frames] for i, s in zip(idx, t)])
      state, m = step(state, {"video": jnp.asarray(video)}, key)
      n += 1
      if n % 250 == 0:
        m = {k: float(m[k]) for k in ("loss", "l1", "kl", "psnr", "grad_norm", "lr")}
        log.append({"step": n, "frames": frames, "s": time.perf_counter() - start, **m})
        print(json.dumps(log[-1]), flush=True)

  start = time.perf_counter()
  if image_minutes > 0:
    run(image_minutes, image_batch, 1)
    # the moments of the single-frame steps do not fit the inflated taps: a fresh optimizer, the step count kept
    state = TrainState.create(inflate_image_params(state.params, stage.model.config), tx).replace(step=state.step)
  image_steps = int(state.step)
  run(minutes, batch, frames, steps)
  n = int(state.step)
  export_vae(stage.model, {"params": jax.tree.map(np.asarray, state.params), "buffers": buffers}, out)
  print(f"{n} steps ({image_steps} single-frame) in {time.perf_counter() - start:.0f} s → {out}", flush=True)
  scores = {"trained": vae_scores(out, num=eval_clips, seconds=eval_seconds, size=res)["summary"]}
  if config.init_checkpoint:
    scores["init"] = vae_scores(config.init_checkpoint, num=eval_clips, seconds=eval_seconds, size=res)["summary"]
  for name, s in scores.items():
    print(f"held-out reconstructions, {name}: PSNR {s['psnr']:.2f} dB, mouth r {s['mouth_r']:.3f} (one opening per "
          f"latent frame: {s['mouth_r_latent_frame_average']:.3f}), latent-boundary ratio "
          f"{s['boundary_ratio_latent']:.3f} (true clips {s['boundary_ratio_latent_truth']:.3f})", flush=True)
  result = {"steps": n, "image_steps": image_steps, "batch": batch, "image_batch": image_batch, "frames": frames,
            "lr": lr, "init": config.init_checkpoint, "causal": causal, "motion_weight": motion_weight,
            "latent_channels": stage.model.config.latent_channels, "seconds": time.perf_counter() - start,
            "eval": scores["trained"], "eval_init": scores.get("init"), "log": log}
  with atomic_path(os.path.join(out, "train_log.json")) as tmp:
    with open(tmp, "w") as fh:
      json.dump(result, fh, indent=1)
  return result
