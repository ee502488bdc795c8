"""Stage 1 (``config.stage = "speechae"``): the SpeechAE learns to reconstruct Whisper features.

Paper §3.2, Eq. 7–9: loss α·MSE(S, Ŝ) + β·L_CON over the per-frame windows S [F, 10, 384] that
``scripts/extract_speech.py`` writes. Stage 2 then encodes speech with it (and fine-tunes it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from read_jax.data import records
from read_jax.models.speech_ae import SpeechAE, speech_ae_loss
from read_jax.nn.dtypes import DTYPES
from read_jax.train.stage import train_val_datasets


class SpeechAEStage:
  """Stage 1: SpeechAE reconstruction of Whisper features, loss α·MSE + β·L_CON (paper Eq. 7–9)."""

  def __init__(self, config):
    self.config = config
    self.model = SpeechAE(**config.model, dtype=DTYPES[config.dtype], param_dtype=DTYPES[config.param_dtype])

  def batch_spec(self):
    m, d = self.config.model, self.config.data
    return {"speech": jax.ShapeDtypeStruct((d.batch_size, d.num_frames, m.window, m.feature_dim), jnp.float32)}

  def init(self, key, batch_spec):
    s = batch_spec["speech"]
    return self.model.init(key, jnp.zeros((1,) + s.shape[1:], s.dtype))["params"]

  def loss_fn(self, params, batch, key):
    del key  # deterministic model: no dropout or noise in stage 1
    s = batch["speech"]  # [B, F, 10, 384]
    _, s_hat = self.model.apply({"params": params}, s)
    l = self.config.loss
    return speech_ae_loss(s, s_hat.astype(jnp.float32), alpha=l.alpha, beta=l.beta, temperature=l.temperature)

  def trainable(self, params):
    return None

  def datasets(self, process_index, process_count):
    d = self.config.data
    return train_val_datasets(d, records.random_crop("speech", d.num_frames), process_index, process_count)
