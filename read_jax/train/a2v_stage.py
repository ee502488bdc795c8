"""Stage 2: the A2V-DiT trained under the ANS forward process, SpeechAE fine-tuned jointly.

Paper §3.3 (Eq. 11–15), Appendix C.1–C.3; docs/design.md §3.5–3.6. One example is one training clip,
written by ``scripts/preprocess.py`` (or any tool producing the same keys):

  latents  [1 + f, h, w, C]      VAE latents, normalised per channel; the reference frame z_R first
  speech   [1 + 8(f − 1), Hw, DA] Whisper features of the clip's video frames (frozen encoder, offline)

The loss: C = SpeechAE.encode(speech); the ANS forward process noises [z_R, z_1 … z_f] with per-frame
timesteps, drops identity / audio / motion prior; the DiT predicts v; MSE over frames 1…f.
Params are ``{"dit": …, "speech_ae": …}``; both train (the SpeechAE at the same learning rate), or
the A2V-DiT alone with ``config.train_speech_ae = False``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from read_jax import ans
from read_jax.convert.prompt import load_text_embedding
from read_jax.models import a2v_dit
from read_jax.models.speech_ae import SpeechAE, num_latents
from read_jax.nn.dtypes import DTYPES
from read_jax.train.stage import as_float32, train_val_datasets



def clip_batch_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
  """One global batch of stage-2 clips (module docstring) for ``config``'s data, model and SpeechAE sizes."""
  d, m, s = config.data, config.model, config.speech_ae
  num_video_frames = 1 + 8 * (d.latent_frames - 1)
  return {
      "latents": jax.ShapeDtypeStruct((d.batch_size, 1 + d.latent_frames, d.latent_height, d.latent_width,
                                       m.in_channels), jnp.float32),
      "speech": jax.ShapeDtypeStruct((d.batch_size, num_video_frames, s.window, s.feature_dim), jnp.float32),
  }


class A2VStage:
  """Stage 2 (``config.stage = "a2v_dit"``)."""

  def __init__(self, config):
    self.config = config
    self.train_speech_ae = config.get("train_speech_ae", True)  # absent in configs saved before the key
    m, s = config.model, config.speech_ae
    if s.latent_dim != m.audio_dim or s.latent_tokens != m.audio_tokens:
      raise ValueError(f"config.speech_ae (latent_tokens={s.latent_tokens}, latent_dim={s.latent_dim}) must "
                       f"match config.model (audio_tokens={m.audio_tokens}, audio_dim={m.audio_dim})")
    self.dit = a2v_dit.build_model(m)
    self.speech_ae = SpeechAE(**s, dtype=DTYPES[m.dtype], param_dtype=DTYPES[m.param_dtype])
    self.text, self.text_mask = load_text_embedding(config.text.path, m.caption_channels)
    a = config.ans
    self.ans = ans.ANSConfig(mu=a.mu, sigma=a.sigma, p_sync=a.p_sync, p_drop_identity=a.p_drop_identity,
                             p_drop_audio=a.p_drop_audio, p_rolling=a.get("p_rolling", 0.0),
                             rolling_noisy=tuple(a.get("rolling_noisy", (1, 2))))

  def batch_spec(self):
    return clip_batch_spec(self.config)

  def init(self, key, batch_spec):
    k_dit, k_sae = jax.random.split(key)
    lat, sp = batch_spec["latents"], batch_spec["speech"]
    x = jnp.zeros((1,) + lat.shape[1:], lat.dtype)
    speech = jnp.zeros((1,) + sp.shape[1:], sp.dtype)
    c = jax.eval_shape(lambda: self.speech_ae.init_with_output(k_sae, speech)[0][0])
    dit_params = self.dit.init(k_dit, x, jnp.zeros(x.shape[:2]), jnp.zeros((1,) + c.shape[1:], c.dtype),
                               self.text, self.text_mask)["params"]
    sae_params = self.speech_ae.init(k_sae, speech)["params"]
    return {"dit": dit_params, "speech_ae": sae_params}

  def loss_fn(self, params, batch, key):
    latents, speech = batch["latents"], batch["speech"]  # [B, 1+f, h, w, C], [B, F, Hw, DA]
    c = self.speech_ae.apply({"params": params["speech_ae"]}, speech, method=SpeechAE.encode)  # [B, f, hw, dA]
    if not self.train_speech_ae:
      c = jax.lax.stop_gradient(c)  # frozen: no backward pass through it
    if c.shape[1] != latents.shape[1] - 1:
      raise ValueError(f"speech gives {c.shape[1]} latent frames (F={speech.shape[1]}, f={num_latents(speech.shape[1])}) "
                       f"but latents have {latents.shape[1] - 1} after the reference")
    ex = ans.training_example(key, latents, c, self.ans)
    v = self.dit.apply({"params": params["dit"]}, ex["x"], ex["t"], ex["speech"], self.text, self.text_mask)
    loss = ans.flow_matching_loss(v.astype(jnp.float32), ex["target"], ex["loss_mask"])
    metrics = {"sync_fraction": jnp.mean(ex["is_sync"].astype(jnp.float32)),
               "rolling_fraction": jnp.mean(ex["is_rolling"].astype(jnp.float32)),
               "t_mean": jnp.sum(ex["t"] * ex["loss_mask"]) / jnp.maximum(jnp.sum(ex["loss_mask"]), 1.0)}
    return loss, metrics

  def trainable(self, params):
    if self.train_speech_ae:
      return None
    return {"dit": jax.tree.map(lambda _: True, params["dit"]),
            "speech_ae": jax.tree.map(lambda _: False, params["speech_ae"])}

  def datasets(self, process_index, process_count):
    return train_val_datasets(self.config.data, as_float32, process_index, process_count)
