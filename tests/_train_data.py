"""Synthetic speech-like feature shards for the training tests (no Whisper, no audio decoding).

Each clip is a smooth trajectory in a low-dimensional space (a few sinusoids with per-clip
frequencies and phases) mapped to [T, Hw, DA] by a fixed random projection: learnable structure
(low rank, temporally smooth) that the SpeechAE can compress, with per-clip variety.
"""

import numpy as np

from read_jax.data import records


def speech_like(rng: np.random.Generator, num_frames: int, window: int, dim: int, proj: np.ndarray) -> np.ndarray:
  t = np.arange(num_frames * window, dtype=np.float32)[:, None] / window  # [T·Hw, 1] in video frames
  rank = proj.shape[0]
  freq = rng.uniform(0.05, 0.4, size=(1, rank))
  phase = rng.uniform(0, 2 * np.pi, size=(1, rank))
  amp = rng.uniform(0.5, 1.5, size=(1, rank))
  z = amp * np.sin(2 * np.pi * freq * t + phase)  # [T·Hw, rank]
  return (z @ proj).reshape(num_frames, window, dim).astype(np.float16)


def write_speech_shards(directory, config, *, train_clips=48, val_clips=16, clip_frames=40, seed=0):
  """``{directory}/train-*.array_record`` and ``val-*`` for ``config``'s model sizes; returns the globs."""
  m = config.model
  rng = np.random.default_rng(seed)
  proj = rng.normal(size=(4, m.feature_dim)).astype(np.float32) / 2
  for split, n in (("train", train_clips), ("val", val_clips)):
    records.write_shards(({"speech": speech_like(rng, clip_frames, m.window, m.feature_dim, proj)} for _ in range(n)),
                         f"{directory}/{split}", examples_per_shard=max(1, n // 3))
  return f"{directory}/train-*.array_record", f"{directory}/val-*.array_record"


def write_stage2_shards(directory, config, *, train_clips=32, val_clips=8, seed=0):
  """Stage-2 clips for ``config`` (configs/a2v_dit.py): latents [1+f, h, w, C] and speech [1+8(f−1), Hw, DA].

  Learnable structure: each clip has an identity (a fixed latent pattern, also its reference frame)
  plus per-frame motion driven by its speech features through a fixed random map, so both the
  reference and the speech condition carry information about the target.
  """
  d, m, s = config.data, config.model, config.speech_ae
  rng = np.random.default_rng(seed)
  f, h, w, c = d.latent_frames, d.latent_height, d.latent_width, m.in_channels
  num_video = 1 + 8 * (f - 1)
  proj = rng.normal(size=(4, s.feature_dim)).astype(np.float32) / 2
  to_latent = rng.normal(size=(s.window * s.feature_dim, c)).astype(np.float32) / np.sqrt(s.window * s.feature_dim)

  def clip():
    speech = speech_like(rng, num_video, s.window, s.feature_dim, proj).astype(np.float32)  # [F, Hw, DA]
    identity = rng.normal(size=(1, h, w, c)).astype(np.float32)
    per_latent = speech[::8].reshape(f, -1) @ to_latent  # [f, C]: latent k ← video frame 8k
    motion = 0.5 * per_latent[:, None, None, :]
    latents = np.concatenate([identity, identity + motion], axis=0)  # [1 + f, h, w, C]
    return {"latents": latents.astype(np.float16), "speech": speech.astype(np.float16)}

  for split, n in (("train", train_clips), ("val", val_clips)):
    records.write_shards((clip() for _ in range(n)), f"{directory}/{split}", examples_per_shard=max(1, n // 2))
  return f"{directory}/train-*.array_record", f"{directory}/val-*.array_record"
