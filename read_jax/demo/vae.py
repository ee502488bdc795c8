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
(``read_jax.models.vae.training_loss``), ``temporal_weight`` adds the L1 of frame-to-frame differences;
``latent_channels`` overrides the config's.

``student`` (with ``causal``): the live decoder. A causal decoder fine-tuned on the encoder's latents alone draws
a live model's latents with more jitter than the non-causal decoder does: it learned to decode latents that
encode real video, not what a causal student generates, and it cannot read ahead to smooth one latent frame into
the next. With a live checkpoint as ``student`` it learns from that model's own latents too: ``student_clips``
sequences generated on training speech (:func:`student_sequences`: the pre-roll, then the live mode's latents),
each decoded whole by the checkpoint's own (non-causal) VAE as the target, so the causal decoder learns to draw,
with no look-ahead, what clip mode's decode would draw of them. Every example is then a pair (latents, frames):
the pool's clips through the frozen encoder, and the student's sequences; each step cuts windows of
``frames`` frames (1 + 8k: k + 1 latent frames) from them, a ``student_fraction`` from the student's
(:func:`_pairs_batch`), through the stage's decoder-only loss (``read_jax.models.vae.decoder_loss``).
:func:`student_decode_scores` scores it on the model's held-out sequences (lip sync, latent-boundary ratio,
flicker) beside the windowed and the whole decode.

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

from read_jax import cli, media
from read_jax.config import load_config
from read_jax.convert.vae import export_vae, load_vae
from read_jax.data import synthetic
from read_jax.errors import ConfigError
from read_jax.eval import talking
from read_jax.eval.demo import evaluate_vae, vae_reconstructor
from read_jax.files import atomic_path, read_json
from read_jax.constants import FRAMES_PER_LATENT
from read_jax.models.vae import inflate_image_params, to_pixels, unit_latent_stats
from read_jax.pipeline import ReadPipeline
from read_jax.train import optim
from read_jax.train.loop import train_step
from read_jax.train.state import TrainState
from read_jax.train.vae_stage import VAEStage

POOL_CLIP_SECONDS = 6.0  # length of each synthetic clip drawn up front
SCHEDULE_STEPS = 100_000  # the learning rate's cosine horizon: a budget run stops long before (nearly constant lr)


def demo_vae_config(*, batch: int, frames: int, lr: float, init: str = "", latent_channels: int = 0,
                    motion_weight: float = 0.0, causal: bool = False, smoke: bool = False,
                    temporal_weight: float = 0.0, decoder_widths: tuple[int, ...] = (),
                    decoder_layers: tuple[int, ...] = (), schedule_steps: int = SCHEDULE_STEPS):
  """configs/demo_vae.py (``:causal`` with ``causal``, ``:smoke`` the tiny model) with this driver's settings:
  ``batch`` clips of ``frames`` frames per step, peak learning rate ``lr`` after 20 warm-up steps, then a cosine to a
  tenth of it at ``schedule_steps``; ``decoder_widths`` / ``decoder_layers``: a smaller decoder
  (``decoder_block_out_channels``, ``decoder_layers_per_block``) cut from ``init``'s (``init_narrow_decoder``)."""
  config = load_config("demo_vae.py:" + ",".join(a for a, on in (("causal", causal), ("smoke", smoke)) if on))
  config.data.batch_size, config.data.num_frames = batch, frames
  config.train.update(dict(lr=lr, steps=schedule_steps, warmup_steps=20, end_lr_fraction=0.1))
  config.loss.motion_weight, config.loss.temporal_weight = motion_weight, temporal_weight
  if init or not causal:
    config.init_checkpoint = init
  if causal and init and read_json(os.path.join(init, "config.json")).get("decoder_causal"):
    config.init_causal_decoder = False  # continuing a causal fine-tune: its taps are where they belong
  if latent_channels:
    config.model.latent_channels = latent_channels
  for arg, key, values, least in (("decoder-widths", "decoder_block_out_channels", decoder_widths, 1),
                                  ("decoder-layers", "decoder_layers_per_block", decoder_layers, 0)):
    if not values:
      continue
    have = tuple(config.model[key])
    if len(values) != len(have) or any(n < least for n in values):
      raise ConfigError(f"need {len(have)} integers ≥ {least}, one per decoder block (the config's: "
                        f"{','.join(map(str, have))})", arg=arg, value=",".join(map(str, values)))
    if not init:
      raise ConfigError("a smaller decoder is cut from a trained VAE's: it needs --init", arg=arg)
    config.model[key] = tuple(values)
    config.init_narrow_decoder = True
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


def live_decode_scores(noncausal: str, causal: str, *, num: int = 4, seconds: float = 4.0, size: int = 64,
                       window: int = 8) -> dict:
  """What a live session's VAE makes of held-out clips, on the same latents (the encoders are the same: a causal
  fine-tune freezes it): PSNR and latent-boundary ratio (:func:`vae_scores`) of

    ``window``    today's live decode: each latent frame decoded with the ``window`` − 1 before it, its 8 frames
                  the last of the window (``ReadPipeline.decode_rolling``), by the non-causal VAE ``noncausal``
    ``stream``    the causal VAE ``causal`` streamed one latent frame at a time (= its decode of the whole clip)
    ``whole``     the non-causal VAE decoding the whole clip at once (clip mode's decode, no live stream)

  over the frames all three give: those of latent frames ``window`` − 1 onwards (each window full)."""
  (model, variables), (causal_model, causal_variables) = load_vae(noncausal), load_vae(causal)
  encode = jax.jit(lambda v, x: model.apply(v, x, method=model.encode).mean)
  decode = jax.jit(lambda v, z, *, m: m.apply(v, z, method=m.decode), static_argnames="m")
  kt = FRAMES_PER_LATENT
  rows = {name: [] for name in ("window", "stream", "whole")}
  truth_ratios = []
  for seed in synthetic.split_seeds("test", num):
    clip = synthetic.make_clip(seed, seconds, size)
    frames = clip.frames[:1 + kt * ((len(clip.frames) - 1) // kt)]
    z = encode(variables, to_pixels(frames[None]))  # [1, t, h, w, C]
    start = kt * (window - 1) - (kt - 1)  # the first frame of latent window − 1
    out = {"whole": decode(variables, z, m=model), "stream": decode(causal_variables, z, m=causal_model)}
    out = {k: np.asarray(v[0, start:]) for k, v in out.items()}
    out["window"] = np.concatenate([np.asarray(decode(variables, z[:, q - window + 1:q + 1], m=model)[0, -kt:])
                                    for q in range(window - 1, z.shape[1])])
    truth = to_pixels(frames[start:])
    bounds = talking.latent_boundaries(len(truth), first=kt)  # the first frame of each latent after the first
    truth_ratios.append(talking.boundary_ratio(np.asarray(truth), bounds))
    for name, y in out.items():
      y = np.clip(y, -1, 1)
      mse = float(np.mean((y - np.asarray(truth)) ** 2))
      rows[name].append({"psnr": 10 * np.log10(4 / max(mse, 1e-10)), "boundary_ratio_latent":
                         talking.boundary_ratio(y, bounds)})
  summary = {name: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for name, rs in rows.items()}
  summary["truth"] = {"boundary_ratio_latent": float(np.mean(truth_ratios))}
  summary.update(num_clips=num, seconds=seconds, window_latents=window, frames_scored=len(truth))
  return summary


def student_sequences(pipe, *, num: int, seconds: float, split: str = "train", first: int = 0,
                      progress: bool = True):
  """What a live session of the pipeline ``pipe`` (a ``ReadPipeline``) hands its decoder, on ``num`` synthetic
  clips of ``split`` (``seconds`` each): per clip ``(clip, z, frames, pre)`` with z [T, h, w, C] the normalised
  latents of the stream, its ``pre`` pre-roll latents (the still portrait) then the live mode's latents
  (``ReadPipeline.sample_latents``), and frames uint8 [1 + 8(T − 1), S, S, 3] the pipeline's VAE decoding the
  whole sequence at once (clip mode's decode: every frame sees its future)."""
  size, mode = pipe.config.resolution, pipe.config.live_mode
  if mode not in ("rolling", "causal"):
    raise ConfigError(f"the live mode is {mode!r}, not a window that streams latents", arg="live_mode", value=mode)
  seeds = list(synthetic.split_seeds(split, num, first))
  for seed in (cli.progress(seeds, desc=f"{mode} latents", unit="clip") if progress else seeds):
    clip = synthetic.make_clip(seed, seconds, size)
    portrait = synthetic.render_face(clip.identity, mouth_open=0.0, size=size)
    pre = pipe.pre_roll_latents(portrait)
    z = np.concatenate([pre, pipe.sample_latents(portrait, clip.audio, mode=mode, seed=seed)])
    yield clip, z, pipe.decode_frames(z, jax.random.key(seed)), len(pre)


def student_decode_scores(live_ckpt: str, causal: str, *, num: int = 8, seconds: float = 8.0,
                          progress: bool = True) -> dict:
  """How a live session's decode draws the live model's own latents (held-out synthetic speech, the clips
  ``scripts/eval_demo.py`` scores): lip sync, latent-boundary ratio and flicker (``read_jax.eval.talking``) of

    ``window``  the checkpoint's live decode without a causal decoder: each latent frame decoded with the
                decode_context − 1 before it by its (non-causal) VAE, the window's last 8 frames kept
    ``whole``   that VAE decoding the whole sequence at once (not live: every frame sees its future)
    ``stream``  the causal VAE ``causal`` streamed (equal to its whole decode: it reads no future)

  on the frames of the speech (the pre-roll's are not shown), as a live session shows them."""
  pipe = ReadPipeline.from_pretrained(live_ckpt)
  model, variables = load_vae(causal)
  if not model.config.decoder_causal:
    raise ConfigError(f"{causal}: its decoder is not causal (decoder_causal false)", arg="causal")
  decode = jax.jit(lambda z: model.apply(variables, z, method=model.decode_latents))
  kt = FRAMES_PER_LATENT
  _, context = pipe.rolling_settings()
  rows = {name: [] for name in ("window", "whole", "stream")}
  for clip, z, whole, pre in student_sequences(pipe, num=num, seconds=seconds, split="test", first=100,
                                               progress=progress):
    shown = (len(z) - pre) * kt
    window = np.concatenate([pipe.decode_frames(z[q - context + 1:q + 1], jax.random.key(q))[-kt:]
                             for q in range(pre, len(z))])
    stream = media.to_uint8(decode(jnp.asarray(z)[None])[0])
    for name, video in (("window", window), ("whole", whole[-shown:]), ("stream", stream[-shown:])):
      video = video[:len(clip.frames)]
      rows[name].append({
          "lip_sync": talking.lip_sync_correlation(video, clip.mouth[:len(video)])[0],
          "boundary_ratio_latent": talking.boundary_ratio(video, talking.latent_boundaries(len(video), first=kt)),
          "flicker": talking.flicker(video) / max(talking.flicker(clip.frames[:len(video)]), 1e-12)})
  summary = {name: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for name, rs in rows.items()}
  summary.update(num_clips=num, seconds=seconds, live_ckpt=live_ckpt, causal=causal, decode_context=context)
  return summary


def _pairs_batch(pairs, rng, batch: int, latents: int, student_fraction: float, real: int):
  """A batch of random windows of ``latents`` latent frames and their frames from ``pairs`` (list of (z, frames)):
  each row from the student's sequences (``pairs[real:]``) with probability ``student_fraction``, else from the
  real clips (``pairs[:real]``). A window's first latent decodes to its last frame alone, as a stream's first."""
  kt = FRAMES_PER_LATENT
  zs, xs = [], []
  for _ in range(batch):
    student = len(pairs) > real and (real == 0 or rng.random() < student_fraction)
    z, frames = pairs[int(rng.integers(real, len(pairs))) if student else int(rng.integers(0, real))]
    a = int(rng.integers(0, len(z) - latents + 1))
    zs.append(z[a:a + latents])
    xs.append(frames[kt * a:kt * (a + latents - 1) + 1])
  return {"latents": jnp.asarray(np.stack(zs)), "video": jnp.asarray(np.stack(xs))}


def train_vae(out: str, *, minutes: float = 6.0, steps: int = 0, image_minutes: float = 0.0, image_batch: int = 64,
              batch: int = 16, frames: int = 17, lr: float = 5e-4, pool: int = 512, init: str = "",
              latent_channels: int = 0, motion_weight: float = 0.0, causal: bool = False,
              eval_clips: int = 4, eval_seconds: float = 4.0, student: str = "", student_clips: int = 64,
              student_seconds: float = 8.0, student_fraction: float = 0.5, smoke: bool = False,
              temporal_weight: float = 0.0, decoder_widths: tuple[int, ...] = (),
              decoder_layers: tuple[int, ...] = (), anneal: bool = False) -> dict:
  """Train (module docstring) and write the VAE to ``out``; returns what ``out``/train_log.json holds.

  ``minutes``: wall-clock budget of the video steps, or ``steps`` of them when > 0; ``frames``: per clip
  (1 + 8k); ``pool``: clips drawn up front; ``eval_clips`` held-out clips of ``eval_seconds`` score the result
  (0: no scores).
  ``student`` (with ``causal``): a live checkpoint whose own latents the causal decoder also learns from,
  ``student_clips`` sequences of ``student_seconds`` (:func:`student_sequences`), each decoded whole by that
  checkpoint's VAE as the target; a ``student_fraction`` of each batch's windows are theirs; the result is scored on
  held-out sequences as long (:func:`student_decode_scores`). ``smoke``: configs/demo.py:tiny's VAE (the build's
  end-to-end test). ``decoder_widths`` / ``decoder_layers``: train a narrower / shallower decoder than ``init``'s,
  starting from its leading channels and resnets (the live decoder's cheaper form, docs/demo.md). ``anneal`` (with
  ``steps``): the learning rate's cosine ends at the last step, a tenth of ``lr``, where a run otherwise keeps it
  nearly constant (the horizon SCHEDULE_STEPS).
  """
  if init and (latent_channels or image_minutes):
    raise ConfigError("--init continues a trained VAE: it takes neither --latent-channels nor --image-minutes")
  if causal and (latent_channels or image_minutes):
    raise ConfigError("--causal fine-tunes a trained VAE's decoder: it takes neither --latent-channels nor "
                      "--image-minutes")
  if anneal and (steps <= 20 or image_minutes):
    raise ConfigError("--anneal decays the learning rate over a fixed number of video steps: it needs --steps > 20 "
                      "(the warm-up's) and no --image-minutes", arg="steps", value=steps)
  if student and not causal:
    raise ConfigError("--student distils a causal decoder on a live model's latents: it needs --causal")
  if student and (frames - 1) % FRAMES_PER_LATENT:
    raise ConfigError(f"must be 1 + {FRAMES_PER_LATENT}k", arg="frames", value=frames)
  config = demo_vae_config(batch=batch, frames=frames, lr=lr, init=init, latent_channels=latent_channels,
                           motion_weight=motion_weight, causal=causal, smoke=smoke, temporal_weight=temporal_weight,
                           decoder_widths=tuple(decoder_widths), decoder_layers=tuple(decoder_layers),
                           schedule_steps=steps if anneal else SCHEDULE_STEPS)
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
  pairs, real = [], 0
  if student:  # every example a (latents, frames) pair: the pool's clips through the frozen encoder, then the student's
    pairs = _encoded_pairs(stage.model, params, buffers, clips)
    real = len(pairs)
    pairs += _student_pairs(student, num=student_clips, seconds=student_seconds)
    print(f"{real} clips encoded and {len(pairs) - real} {student} sequences in {time.perf_counter() - t0:.0f} s",
          flush=True)
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
      if pairs:
        data = _pairs_batch(pairs, rng, batch, 1 + (frames - 1) // FRAMES_PER_LATENT, student_fraction, real)
      else:
        idx = rng.integers(0, pool, batch)
        t = rng.integers(0, clips.shape[1] - frames + 1, batch)
        data = {"video": jnp.asarray(np.stack([clips[i, s:s + frames] for i, s in zip(idx, t)]))}
      state, m = step(state, data, key)
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
  scores = {"trained": vae_scores(out, num=eval_clips, seconds=eval_seconds, size=res)["summary"]} if eval_clips else {}
  if config.init_checkpoint and eval_clips:
    scores["init"] = vae_scores(config.init_checkpoint, num=eval_clips, seconds=eval_seconds, size=res)["summary"]
  for name, s in scores.items():
    print(f"held-out reconstructions, {name}: PSNR {s['psnr']:.2f} dB, mouth r {s['mouth_r']:.3f} (one opening per "
          f"latent frame: {s['mouth_r_latent_frame_average']:.3f}), latent-boundary ratio "
          f"{s['boundary_ratio_latent']:.3f} (true clips {s['boundary_ratio_latent_truth']:.3f})", flush=True)
  # A live session of the clips: today's window decode (init) vs streaming this one (with a student: its own latents).
  if causal and config.init_causal_decoder and not student and eval_clips:
    live = live_decode_scores(config.init_checkpoint, out, num=eval_clips, seconds=eval_seconds, size=res)
    scores["live_decode"] = live
    print("live decode, " + "; ".join(f"{k}: PSNR {live[k]['psnr']:.2f} dB, latent-boundary ratio "
                                       f"{live[k]['boundary_ratio_latent']:.3f}"
                                       for k in ("window", "stream", "whole")), flush=True)
  if student and eval_clips:  # the live model's own latents (held-out speech): the windowed, whole and streamed decodes
    scores["student_decode"] = student_decode_scores(student, out, num=eval_clips, seconds=student_seconds,
                                                      progress=False)
    for k in ("window", "whole", "stream"):
      d = scores["student_decode"][k]
      print(f"the live model's latents, {k} decode: lip sync {d['lip_sync']:.3f}, latent-boundary ratio "
            f"{d['boundary_ratio_latent']:.3f}, flicker {d['flicker']:.3f}", flush=True)
  result = {"steps": n, "image_steps": image_steps, "batch": batch, "image_batch": image_batch, "frames": frames,
            "lr": lr, "init": config.init_checkpoint, "causal": causal, "motion_weight": motion_weight,
            "temporal_weight": temporal_weight, "schedule_steps": config.train.steps,
            "decoder_widths": list(stage.model.config.decoder_block_out_channels),
            "decoder_layers": list(stage.model.config.decoder_layers_per_block),
            "latent_channels": stage.model.config.latent_channels, "seconds": time.perf_counter() - start,
            "student": student, "student_clips": student_clips if student else 0, "student_fraction":
            student_fraction if student else 0.0, "eval": scores.get("trained"), "eval_init": scores.get("init"),
            "live_decode": scores.get("live_decode"), "student_decode": scores.get("student_decode"), "log": log}
  with atomic_path(os.path.join(out, "train_log.json")) as tmp:
    with open(tmp, "w") as fh:
      json.dump(result, fh, indent=1)
  return result


def _encoded_pairs(model, params, buffers, clips, batch: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
  """(latents [T, h, w, C], frames uint8 [1 + 8(T − 1), S, S, 3]) of uint8 clips [P, F, S, S, 3]: the posterior
  means of the (frozen) encoder, not normalised, each clip's frames cut to a whole number of latent frames."""
  kt = FRAMES_PER_LATENT
  frames = clips[:, :1 + kt * ((clips.shape[1] - 1) // kt)]
  encode = jax.jit(lambda p, x: model.apply({"params": p, "buffers": buffers}, to_pixels(x),
                                            method=model.encode).mode())
  out = []
  for i in range(0, len(frames), batch):
    z = np.asarray(encode(params, jnp.asarray(frames[i:i + batch])), np.float32)
    out += list(zip(z, frames[i:i + batch]))
  return out


def _student_pairs(live_ckpt: str, *, num: int, seconds: float) -> list[tuple[np.ndarray, np.ndarray]]:
  """(latents not normalised, the live checkpoint's VAE's whole decode) of :func:`student_sequences` on training
  clips."""
  pipe = ReadPipeline.from_pretrained(live_ckpt)
  denormalize = jax.jit(lambda z: pipe.vae.apply(pipe.vae_variables, z, method=pipe.vae.denormalize_latents))
  return [(np.asarray(denormalize(jnp.asarray(z)), np.float32), frames)
          for _, z, frames, _ in student_sequences(pipe, num=num, seconds=seconds)]
