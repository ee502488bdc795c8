"""What a model's parts carry of the mouth: linear read-outs from its latents and speech, and how much it listens.

Where a lip-sync failure comes from (README "Demo model"; ``read_jax.eval.demo`` reports them all):

  speech_effect(pipe, ...)          how much the A2V-DiT listens: mean |v(speech) − v(other speech)| / mean |v|
                                    (0 for an audio attention still at its zero initialisation)
  latent_mouth_probe / latent_lip_sync
                                    ridge read-out of the mean opening of a latent frame's 8 frames from that
                                    latent frame (fitted on training-split VAE latents), applied to sampled or
                                    encoded latents: the A2V-DiT's share of a failure vs the VAE's
  speech_mouth_probe / speech_readout
                                    ridge read-out of a latent frame's 8 openings from its speech (SpeechAE
                                    latents or raw Whisper windows): roughly the most a model linear in its
                                    speech input could lip-sync; the SpeechAE's share vs the A2V-DiT's

Every read-out is fitted and applied on rows with their clip's mean removed (the openings too), so it reads
the mouth's movement, not a clip's identity.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.data import synthetic
from read_jax.eval import talking
from read_jax.constants import FRAMES_PER_LATENT

SPEECH_SOURCES = ("latents", "whisper")


def speech_effect(pipe, portrait, audio, other_audio, *, times=(0.9, 0.5, 0.2), seed: int = 0) -> float:
  """How much the A2V-DiT listens: mean |v(speech) − v(other speech)| / mean |v(speech)| over one noised
  clip of ``pipe.config.clip_frames`` latent frames after the portrait's latent, averaged over ``times``.
  0 for a model whose audio attention is still at its zero initialisation."""
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


def ridge_fit(a, b, ridge: float) -> np.ndarray:
  """argmin_W |a W − b|² + ridge·|W|² (rows of ``a`` are examples; ``b`` [N] or [N, K]), in float64."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  n, d = a.shape
  if d > n:  # the same W from the N×N system: Wide features (raw Whisper states) would need a D×D one
    return a.T @ np.linalg.solve(a @ a.T + ridge * np.eye(n), b)
  return np.linalg.solve(a.T @ a + ridge * np.eye(d), a.T @ b)


def openings(mouth, k: int) -> np.ndarray:
  """[k, 8]: the true opening of each frame of latent frames 1 … k."""
  return np.asarray(mouth[1:1 + FRAMES_PER_LATENT * k], np.float64).reshape(k, FRAMES_PER_LATENT)


def latents_and_mouth(pipe, frames, mouth, latents=None) -> tuple[np.ndarray, np.ndarray]:
  """(latent frames 1 … k flattened [k, h·w·C], mean true opening of each one's frames [k]) for the first
  1 + 8k frames; ``latents``: sampled ones instead of the VAE's encoding of ``frames``."""
  k = (len(frames) - 1) // FRAMES_PER_LATENT
  if latents is None:
    latents = pipe.encode_video(frames[:1 + FRAMES_PER_LATENT * k])
  m = openings(mouth, k).mean(1)
  return np.asarray(latents[1:1 + k]).reshape(k, -1), m


def latent_mouth_probe(pipe, *, num: int = 40, seconds: float = 4.0, ridge: float = 1.0) -> np.ndarray:
  """Weights w [h·w·C] of a linear read-out of the mouth from one latent frame: ridge regression (``ridge``)
  from each latent frame k ≥ 1 to the mean true opening of its frames, both with their clip's mean
  removed, over the first ``num`` training-split clips (``seconds`` long) encoded by ``pipe``'s VAE."""
  rows, targets = [], []
  for s in synthetic.split_seeds("train", num):
    clip = synthetic.make_clip(s, seconds, pipe.config.resolution)
    z, m = latents_and_mouth(pipe, clip.frames, clip.mouth)
    rows.append(z - z.mean(0))
    targets.append(m - m.mean())
  return ridge_fit(np.concatenate(rows), np.concatenate(targets), ridge)


def latent_lip_sync(pipe, probe, frames, mouth, latents=None) -> float:
  """Pearson r of ``probe``'s read-out of the latents (``latents``, or the VAE's encoding of ``frames``)
  with the true opening per latent frame (:func:`latent_mouth_probe`)."""
  z, m = latents_and_mouth(pipe, frames, mouth, latents)
  return talking.pearson(z @ probe, m)


def speech_rows(pipe, audio, num_latents: int, source: str) -> np.ndarray:
  """[k, ·]: latent frames 1 … k = num_latents − 1 of ``audio`` as flat rows, from the speech latents
  (``source="latents"``, k × hw·dA) or from the Whisper windows of each one's 8 frames ("whisper", k × 8·Hw·DA)."""
  if source == "latents":
    x = pipe.speech_latents(audio, num_latents)[1:]  # [k, hw, dA]
  elif source == "whisper":
    x = pipe.speech_features(audio, num_latents)[1:]  # [8k, Hw, DA]: latent frame j's 8 windows are rows 8j … 8j + 7
  else:
    raise ValueError(f"source must be 'latents' or 'whisper', got {source!r}")
  return np.asarray(x, np.float64).reshape(num_latents - 1, -1)


def speech_mouth_probe(pipe, source: str = "latents", *, num: int = 40, seconds: float = 4.0,
                       ridge: float = 1.0) -> np.ndarray:
  """Weights W [D, 8] of a linear read-out of the 8 frames' mouth openings from one latent frame's speech
  (``source``: "latents" or "whisper", :func:`speech_rows`): ridge regression over the first ``num``
  training-split clips, each clip's mean removed from both sides."""
  rows, targets = [], []
  for s in synthetic.split_seeds("train", num):
    clip = synthetic.make_clip(s, seconds, pipe.config.resolution)
    k = (len(clip.mouth) - 1) // FRAMES_PER_LATENT
    x, m = speech_rows(pipe, clip.audio, 1 + k, source), openings(clip.mouth, k)
    rows.append(x - x.mean(0))
    targets.append(m - m.mean())
  return ridge_fit(np.concatenate(rows), np.concatenate(targets), ridge)


def speech_readout(pipe, probe, audio, mouth, source: str = "latents") -> float:
  """Pearson r, over the frames of latent frames 1 … k, of ``probe``'s read-out of the mouth from ``audio``'s
  speech (:func:`speech_mouth_probe`) with the true opening ``mouth``."""
  k = (len(mouth) - 1) // FRAMES_PER_LATENT
  x = speech_rows(pipe, audio, 1 + k, source)
  # The read-out was fitted on rows with their clip's mean removed: without it, x̄ @ W adds an offset per frame
  # slot of the latent frame (8 of them), not one constant that the correlation would ignore.
  return talking.pearson((x - x.mean(0)) @ probe, openings(mouth, k))
