#!/usr/bin/env python
"""Score a demo model on held-out synthetic speech: lip sync, identity colours, ANS clip boundaries.

  python scripts/eval_demo.py                         # the bundled model (assets/demo), 8 test clips of 8 s
  python scripts/eval_demo.py --ckpt DIR --num 4 --json scores.json
  python scripts/eval_demo.py --vae DIR               # a VAE alone (e.g. ckpt/vae, train_demo_vae.py --out)

For each clip of the synthetic test split (seeds the training never saw; identities too), the model
animates the clip's identity (a portrait with the mouth closed) with the clip's speech and reports
(read_jax/eval/talking.py):

  lip sync      Pearson r of the generated mouth opening with the clip's true opening (best lag ±1
                frame); control: the same portrait driven by ANOTHER clip's speech, against this clip's
                track (near 0 if the mouth follows the audio); ceiling: the ground-truth video itself
  identity      mean RGB distance (0–255) of the face region's colour to the portrait's; control: the
                distance between the portraits of two different test identities
  boundaries    mean |frame difference| at clip boundaries / within clips, ANS vs the same model with
                the motion prior off (plain clip concatenation, the paper's Fig. 2 ablation)
  speech effect how much the A2V-DiT listens: mean |v(speech) − v(another clip's speech)| / mean |v| of
                its prediction for one noised clip at t = 0.9, 0.5, 0.2 (0 at initialisation; the cause
                to check first when lip sync equals the other-audio control)
  speech read-out  what the A2V-DiT hears of the mouth: Pearson r of a linear read-out of each frame's true
                opening from the speech latents (ridge regression from a latent frame's speech tokens to the
                openings of its 8 frames, fitted on training-split clips) — roughly the most a model that is
                linear in its speech input could lip-sync; from the raw Whisper windows: what the SpeechAE
                had to keep (it tells the SpeechAE's share of a lip-sync failure from the A2V-DiT's)
  latent lip sync  lip sync of the sampled latents before the VAE decodes them: Pearson r of a linear
                read-out of the mouth (ridge regression from a latent frame to the mean opening of its 8
                frames, fitted on training-split clips' VAE latents) with the true per-latent-frame
                opening; control: another clip's speech; ceiling: the read-out on the clip's own VAE
                latents. It tells the A2V-DiT's share of a lip-sync failure from the VAE's.

``--cfg/--alpha/--beta/--steps`` sample with other settings than the checkpoint's pipeline.json, e.g. speech-only
guidance ``--cfg split --alpha -7 --beta 8`` (split CFG is (1 − α − β)·v_∅ + α·v_R + β·v_R,C; with
α = 1 − β it is v_R + β·(v_R,C − v_R): no push towards the reference, β times the speech's effect).

``--vae`` scores a VAE's reconstructions of the same clips instead, the check to run before building a
demo model on it: the generated mouth can only move as far as the VAE draws it. It reports PSNR and the
lip-sync r of the reconstruction, next to the r of the true track averaged over each latent frame's 8
frames (what a VAE that keeps one opening per latent frame would score: 0.59 on 4 clips of 8 s): a VAE
for lip sync ≥ 0.6 must score well above that (≥ 0.8).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def speech_effect(pipe, portrait, audio, other_audio, *, times=(0.9, 0.5, 0.2), seed: int = 0) -> float:
  """How much the A2V-DiT listens: mean |v(speech) − v(other speech)| / mean |v(speech)| over one noised
  clip of ``pipe.config.clip_frames`` latent frames after the portrait's latent, averaged over ``times``.
  0 for a model whose audio attention is still at its zero initialisation."""
  import jax
  import jax.numpy as jnp

  f = pipe.config.clip_frames
  z_ref = pipe.reference_latent(portrait)
  speech = [pipe.speech_latents(a, 1 + f)[1:] for a in (audio, other_audio)]  # [f, S, D]: latent frames 1 … f
  noise = jax.random.normal(jax.random.key(seed), (f,) + z_ref.shape, jnp.float32)
  ratios = []
  for t in times:
    z = jnp.concatenate([z_ref[None], t * noise], axis=0)  # the clip's frames at noise level t (x0 = 0)
    tt = jnp.concatenate([jnp.zeros(1), jnp.full(f, t)])  # the reference frame is clean
    v, v_other = (np.asarray(pipe.velocity(z, tt, s))[1:] for s in speech)
    ratios.append(np.abs(v - v_other).mean() / max(np.abs(v).mean(), 1e-12))
  return float(np.mean(ratios))


def latent_mouth_probe(pipe, *, num: int = 40, seconds: float = 4.0, ridge: float = 1.0) -> np.ndarray:
  """Weights w [h·w·C] of a linear read-out of the mouth from one latent frame: ridge regression (``ridge``)
  from each latent frame k ≥ 1 to the mean true opening of its frames, both with their clip's mean
  removed, over the first ``num`` training-split clips (``seconds`` long) encoded by ``pipe``'s VAE."""
  from read_jax.data import synthetic

  rows, targets = [], []
  for s in synthetic.split_seeds("train", num):
    clip = synthetic.make_clip(s, seconds, pipe.config.resolution)
    z, m = _latents_and_mouth(pipe, clip.frames, clip.mouth)
    rows.append(z - z.mean(0))
    targets.append(m - m.mean())
  return _ridge(np.concatenate(rows), np.concatenate(targets), ridge)


def _ridge(a, b, ridge: float) -> np.ndarray:
  """argmin_W |a W − b|² + ridge·|W|² (rows of ``a`` are examples; ``b`` [N] or [N, K])."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ b)


def _speech_rows(pipe, audio, num_latents: int, source: str) -> np.ndarray:
  """[k, ·]: latent frames 1 … k = num_latents − 1 of ``audio`` as flat rows, from the speech latents
  (``source="latents"``, k × hw·dA) or from the Whisper windows of each one's 8 frames ("whisper", k × 8·Hw·DA)."""
  if source == "latents":
    x = pipe.speech_latents(audio, num_latents)[1:]  # [k, hw, dA]
  elif source == "whisper":
    x = pipe.speech_features(audio, num_latents)[1:]  # [8k, Hw, DA]: latent frame j's 8 windows are rows 8j … 8j + 7
  else:
    raise ValueError(f"source must be 'latents' or 'whisper', got {source!r}")
  return np.asarray(x, np.float64).reshape(num_latents - 1, -1)


def _openings(mouth, k: int) -> np.ndarray:
  """[k, 8]: the true opening of each frame of latent frames 1 … k."""
  from read_jax.pipeline import VAE_TEMPORAL as ratio

  return np.asarray(mouth[1:1 + ratio * k], np.float64).reshape(k, ratio)


def speech_mouth_probe(pipe, source: str = "latents", *, num: int = 40, seconds: float = 4.0,
                       ridge: float = 1.0) -> np.ndarray:
  """Weights W [D, 8] of a linear read-out of the 8 frames' mouth openings from one latent frame's speech
  (``source``: "latents" or "whisper", :func:`_speech_rows`): ridge regression over the first ``num``
  training-split clips, each clip's mean removed from both sides."""
  from read_jax.data import synthetic
  from read_jax.pipeline import VAE_TEMPORAL as ratio

  rows, targets = [], []
  for s in synthetic.split_seeds("train", num):
    clip = synthetic.make_clip(s, seconds, pipe.config.resolution)
    k = (len(clip.mouth) - 1) // ratio
    x, m = _speech_rows(pipe, clip.audio, 1 + k, source), _openings(clip.mouth, k)
    rows.append(x - x.mean(0))
    targets.append(m - m.mean())
  return _ridge(np.concatenate(rows), np.concatenate(targets), ridge)


def speech_readout(pipe, probe, audio, mouth, source: str = "latents") -> float:
  """Pearson r, over the frames of latent frames 1 … k, of ``probe``'s read-out of the mouth from ``audio``'s
  speech (:func:`speech_mouth_probe`) with the true opening ``mouth``."""
  from read_jax.eval import talking
  from read_jax.pipeline import VAE_TEMPORAL as ratio

  k = (len(mouth) - 1) // ratio
  x = _speech_rows(pipe, audio, 1 + k, source)
  # The read-out was fitted on rows with their clip's mean removed: without it, x̄ @ W adds an offset per frame
  # slot of the latent frame (8 of them), not one constant that the correlation would ignore.
  return talking.pearson((x - x.mean(0)) @ probe, _openings(mouth, k))


def _latents_and_mouth(pipe, frames, mouth, latents=None):
  """(latent frames 1 … k flattened [k, h·w·C], mean true opening of each one's frames [k]) for the first
  1 + 8k frames; ``latents``: sampled ones instead of the VAE's encoding of ``frames``."""
  from read_jax.pipeline import VAE_TEMPORAL as ratio

  k = (len(frames) - 1) // ratio
  if latents is None:
    latents = pipe.encode_video(frames[:1 + ratio * k])
  m = _openings(mouth, k).mean(1)
  return np.asarray(latents[1:1 + k]).reshape(k, -1), m


def latent_lip_sync(pipe, probe, frames, mouth, latents=None) -> float:
  """Pearson r of ``probe``'s read-out of the latents (``latents``, or the VAE's encoding of ``frames``)
  with the true opening per latent frame (:func:`latent_mouth_probe`)."""
  from read_jax.eval import talking

  z, m = _latents_and_mouth(pipe, frames, mouth, latents)
  return talking.pearson(z @ probe, m)


def evaluate(pipe, *, num: int = 8, seconds: float = 8.0, first: int = 100, seed: int = 0, progress=True,
             probe_clips: int = 40, **sample) -> dict:
  """Scores of ``pipe`` over test clips ``first … first + num − 1`` (see the module docstring); the latent
  mouth read-out is fitted on ``probe_clips`` training clips; ``sample``: keywords of ``pipe.generate``
  (cfg, alpha, beta, steps)."""
  import tqdm

  from read_jax.data import synthetic
  from read_jax.eval import talking

  size = pipe.config.resolution
  seeds = list(synthetic.split_seeds("test", num, first))
  clips = [synthetic.make_clip(s, seconds, size) for s in seeds]
  portraits = [synthetic.render_face(c.identity, mouth_open=0.0, size=size) for c in clips]
  rows = []
  t0 = time.perf_counter()
  probe = latent_mouth_probe(pipe, num=probe_clips)
  # Fitted on clips as long as the test clips: a read-out fitted on 4 s clips scores 0.83 on any 4 s of a test clip
  # but 0.40 on its whole 8 s (the features drift a little over a clip, and the mean removed is the whole clip's).
  speech_probes = {source: speech_mouth_probe(pipe, source, num=probe_clips, seconds=seconds)
                   for source in ("latents", "whisper")}
  for i, (clip, portrait) in enumerate(tqdm.tqdm(list(zip(clips, portraits)), desc="eval", unit="clip",
                                                 disable=not progress)):
    other = clips[(i + 1) % len(clips)]
    video = pipe.generate(portrait, clip.audio, seed=seed, **sample)
    plain = pipe.generate(portrait, clip.audio, seed=seed, motion_prior=False, **sample)
    crossed = pipe.generate(portrait, other.audio, seed=seed, **sample)
    latents = pipe.sample_latents(portrait, clip.audio, seed=seed, **sample)
    latents_crossed = pipe.sample_latents(portrait, other.audio, seed=seed, **sample)
    bounds = talking.clip_boundaries(len(video), pipe.config.clip_frames)
    rows.append({
        "seed": clip.seed,
        "lip_sync": talking.lip_sync_correlation(video, clip.mouth)[0],
        "lip_sync_other_audio": talking.lip_sync_correlation(crossed, clip.mouth)[0],
        "lip_sync_ground_truth": talking.lip_sync_correlation(clip.frames, clip.mouth)[0],
        "lip_sync_plain": talking.lip_sync_correlation(plain, clip.mouth)[0],
        "colour_error": talking.face_colour_error(video, portrait),
        "colour_error_other_identity": talking.face_colour_error(portraits[(i + 1) % len(clips)][None], portrait),
        "boundary_ratio_ans": talking.boundary_ratio(video, bounds),
        "boundary_ratio_plain": talking.boundary_ratio(plain, bounds),
        "speech_effect": speech_effect(pipe, portrait, clip.audio, other.audio, seed=seed),
        "speech_readout": speech_readout(pipe, speech_probes["latents"], clip.audio, clip.mouth),
        "speech_readout_whisper": speech_readout(pipe, speech_probes["whisper"], clip.audio, clip.mouth, "whisper"),
        "latent_lip_sync": latent_lip_sync(pipe, probe, clip.frames, clip.mouth, latents),
        "latent_lip_sync_other_audio": latent_lip_sync(pipe, probe, clip.frames, clip.mouth, latents_crossed),
        "latent_lip_sync_vae": latent_lip_sync(pipe, probe, clip.frames, clip.mouth),
    })
  keys = [k for k in rows[0] if k != "seed"]
  summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
  summary.update(num_clips=len(rows), seconds=seconds, boundaries_per_clip=len(bounds),
                 wall_s=time.perf_counter() - t0)
  return {"summary": summary, "clips": rows}


def evaluate_vae(reconstruct, *, num: int = 8, seconds: float = 8.0, first: int = 100, size: int = 64,
                 temporal_ratio: int = 8, progress=True) -> dict:
  """Reconstruction scores over test clips ``first … first + num − 1`` (see the module docstring).

  ``reconstruct``: uint8 frames [F, S, S, 3] (F = 1 + 8k) → frames in [−1, 1] of the same shape.
  """
  import tqdm

  from read_jax.data import synthetic
  from read_jax.eval import talking

  rows = []
  t0 = time.perf_counter()
  for s in tqdm.tqdm(list(synthetic.split_seeds("test", num, first)), desc="eval vae", unit="clip",
                     disable=not progress):
    clip = synthetic.make_clip(s, seconds, size)
    n = 1 + temporal_ratio * ((len(clip.frames) - 1) // temporal_ratio)
    frames, mouth = clip.frames[:n], clip.mouth[:n]
    y = np.clip(np.asarray(reconstruct(frames), np.float32), -1, 1)
    mse = float(np.mean((y - (frames.astype(np.float32) / 127.5 - 1)) ** 2))
    # One opening per latent frame: frame 0 alone, then each run of temporal_ratio frames.
    blocks = np.concatenate([mouth[:1]] + [np.full(temporal_ratio, b.mean())
                                           for b in mouth[1:].reshape(-1, temporal_ratio)])
    rows.append({"seed": clip.seed, "psnr": 10 * np.log10(4 / max(mse, 1e-10)),
                 "mouth_r": talking.lip_sync_correlation(y, mouth)[0],
                 "mouth_r_latent_frame_average": talking.pearson(blocks, mouth)})
  keys = [k for k in rows[0] if k != "seed"]
  summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
  summary.update(num_clips=len(rows), frames_per_clip=n, wall_s=time.perf_counter() - t0)
  return {"summary": summary, "clips": rows}


def vae_reconstructor(path):
  """uint8 frames [F, S, S, 3] → the VAE's reconstruction in [−1, 1] (encode, posterior mode, decode)."""
  import jax

  from read_jax.convert.vae import load_vae
  from read_jax.models.vae import to_pixels

  model, variables = load_vae(path)
  run = jax.jit(model.apply)
  return lambda frames: np.asarray(run(variables, to_pixels(frames[None])))[0]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--ckpt", default=os.path.join(_ROOT, "assets", "demo"), help="read_jax checkpoint directory")
  parser.add_argument("--num", type=int, default=8, help="test clips")
  parser.add_argument("--seconds", type=float, default=8.0, help="length of each test clip")
  parser.add_argument("--first", type=int, default=100, help="first test-split clip index")
  parser.add_argument("--seed", type=int, default=0, help="sampling seed")
  parser.add_argument("--json", default="", help="also write the scores here")
  parser.add_argument("--vae", default="", help="score this VAE's reconstructions instead (diffusers layout)")
  parser.add_argument("--cfg", choices=("none", "joint", "split"), default=None,
                      help="guidance (default: the checkpoint's)")
  parser.add_argument("--alpha", type=float, default=None, help="guidance α (default: the checkpoint's)")
  parser.add_argument("--beta", type=float, default=None, help="guidance β (split only; default: the checkpoint's)")
  parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the checkpoint's)")
  args = parser.parse_args(argv)
  if args.num < 1 or (args.num < 2 and not args.vae):
    parser.error(f"--num must be >= 2 (the controls pair each clip with another; --vae: >= 1), got {args.num}")

  if args.vae:
    try:
      reconstruct = vae_reconstructor(args.vae)
    except (OSError, ValueError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    scores = evaluate_vae(reconstruct, num=args.num, seconds=args.seconds, first=args.first)
    s = scores["summary"]
    print(f"{s['num_clips']} held-out clips of {s['frames_per_clip']} frames, {s['wall_s']:.0f} s")
    print(f"reconstruction PSNR {s['psnr']:.2f} dB")
    print(f"mouth r             {s['mouth_r']:.3f}   (one opening per latent frame: "
          f"{s['mouth_r_latent_frame_average']:.3f}; lip sync ≥ 0.6 needs ≥ 0.8 here)")
  else:
    from read_jax.pipeline import ReadPipeline
    try:
      pipe = ReadPipeline.from_pretrained(args.ckpt)
    except (OSError, ValueError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    sample = {k: getattr(args, k) for k in ("cfg", "alpha", "beta", "steps") if getattr(args, k) is not None}
    scores = evaluate(pipe, num=args.num, seconds=args.seconds, first=args.first, seed=args.seed, **sample)
    scores["summary"]["sampling"] = sample
    s = scores["summary"]
    print(f"{s['num_clips']} held-out clips of {s['seconds']:g} s ({s['boundaries_per_clip']} clip boundaries "
          f"each), {s['wall_s']:.0f} s")
    print(f"lip sync r          {s['lip_sync']:.3f}   (other clip's audio: {s['lip_sync_other_audio']:.3f}; "
          f"ground-truth video: {s['lip_sync_ground_truth']:.3f}; without motion prior: {s['lip_sync_plain']:.3f})")
    print(f"face colour error   {s['colour_error']:.1f} / 255   (between two test identities: "
          f"{s['colour_error_other_identity']:.1f})")
    print(f"boundary ratio      ANS {s['boundary_ratio_ans']:.3f}   plain concatenation "
          f"{s['boundary_ratio_plain']:.3f}   (1 = as smooth as within a clip)")
    print(f"speech effect       {100 * s['speech_effect']:.2f} %   (how much another clip's speech moves the "
          f"A2V-DiT's prediction, |Δv| / |v|)")
    print(f"speech read-out r   {s['speech_readout']:.3f}   (from the raw Whisper windows: "
          f"{s['speech_readout_whisper']:.3f}; the mouth in what the A2V-DiT hears, read linearly)")
    print(f"latent lip sync r   {s['latent_lip_sync']:.3f}   (other clip's audio: "
          f"{s['latent_lip_sync_other_audio']:.3f}; the VAE's own latents: {s['latent_lip_sync_vae']:.3f})")
  if args.json:
    with open(args.json, "w") as fh:
      json.dump(scores, fh, indent=1)
  return 0

if __name__ == "__main__":
  sys.exit(main())
