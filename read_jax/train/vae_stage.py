"""VAE training (``config.stage = "vae"``): the LTX-architecture VAE from scratch, L1 + KL.

READ itself uses the pretrained LTX-Video VAE and never trains it (paper §4.1). This stage exists for
small VAEs trained on data that the released one was not made for: the demo model's 64² VAE on the
synthetic set (configs/demo_vae.py). One example is one video:

  video  uint8 [F, H, W, 3]   frames (``read_jax.data.preprocess.write_frame_shards``)

A random window of ``config.data.num_frames`` (= 1 + 8k) frames is cut per example, and with
``config.data.crop`` > 0 a random square of that side (a multiple of the spatial compression): the
VAE is convolutional, so it learns from crops at a fraction of the cost and runs on whole frames. The loss is
``L1(decode(z), x) + kl_weight · KL(q(z | x) ‖ N(0, I))``, L1 the mean over pixels and KL the mean over
latent elements, z drawn from the posterior or (``loss.sample_posterior=False``) its mean. LTX's
posterior starts with unit variance, which drowns the small initial means: sampled, the decoder
first learns to ignore z and a small run stays at the mean image for hundreds of steps; the mean
trains at once (the KL still bounds the latents' scale, and the diffusion model sees normalised
latents either way). LTX adds perceptual and adversarial terms for its
sharp full-size VAE; on the flat synthetic faces L1 suffices.

A run on single frames (``num_frames=1``) is a cheap warm-up for a video run; the video run starts from
it with ``config.init_checkpoint`` and ``config.init_from_image=True``, which inflates the params for
video (``read_jax.models.vae.inflate_image_params``) once they are read.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.data import records
from read_jax.models.vae import (AutoencoderKLLTXVideo, compression_ratios, inflate_image_params, to_pixels,
                                 training_loss, unit_latent_stats)
from read_jax.train.stage import train_val_datasets


def rbg_key(key: jax.Array) -> jax.Array:
  """An "rbg" PRNG key derived from any key: XLA compiles the VAE's init with it several times faster."""
  data = jax.random.key_data(jax.random.split(key, 2)).reshape(-1)  # 4 × uint32 (threefry: 2 keys × 2)
  return jax.random.wrap_key_data(data[:4], impl="rbg")


class VAEStage:
  """Stage "vae": params are the VAE's ``params`` collection; its latent statistics stay mean 0 / std 1
  here and are measured after training (:func:`latent_stats`)."""

  def __init__(self, config):
    self.config = config
    self.model = AutoencoderKLLTXVideo.from_config(
        {**config.model, "dtype": config.dtype, "param_dtype": config.param_dtype})
    self.buffers = unit_latent_stats(self.model.config.latent_channels)

  def batch_spec(self):
    d = self.config.data
    side = d.crop or d.resolution
    return {"video": jax.ShapeDtypeStruct((d.batch_size, d.num_frames, side, side, 3), jnp.uint8)}

  def init(self, key, batch_spec):
    v = batch_spec["video"]
    ks, _ = compression_ratios(self.model.config)
    x = jnp.zeros((1, 1, ks, ks, v.shape[-1]), jnp.float32)  # the params do not depend on the video size
    return self.model.init(rbg_key(key), x)["params"]

  def loss_fn(self, params, batch, key):
    l = self.config.loss
    return training_loss(self.model, {"params": params, "buffers": self.buffers}, to_pixels(batch["video"]), key,
                         kl_weight=l.kl_weight, sample_posterior=l.sample_posterior)

  def trainable(self, params):
    return None

  def adapt_init_params(self, params):
    # config.init_from_image: the init checkpoint saw single frames only (configs/demo_vae.py:image).
    return inflate_image_params(params, self.model.config) if self.config.init_from_image else params

  def datasets(self, process_index, process_count):
    d = self.config.data
    return train_val_datasets(d, _crop_uint8("video", d.num_frames, d.crop), process_index, process_count)


def _crop_uint8(key: str, num_frames: int, side: int = 0):
  """A random window of ``num_frames`` frames and (``side`` > 0) a random ``side``² square of them, uint8."""
  crop = records.random_crop(key, num_frames)

  def transform(example, rng):
    x = crop(example, rng)[key].astype(np.uint8)  # stays uint8 to the device (4× less to move)
    if side:
      y0, x0 = (int(rng.integers(0, n - side + 1)) for n in x.shape[1:3])
      x = x[:, y0:y0 + side, x0:x0 + side]
    return {key: x}
  return transform


def latent_stats(model: AutoencoderKLLTXVideo, params, videos, batch_frames: int = 17) -> dict[str, np.ndarray]:
  """Per-channel mean and std of the posterior means over ``videos`` (iterable of uint8 [F, H, W, 3]),
  the ``latents_mean`` / ``latents_std`` buffers that normalise latents for the diffusion model."""
  buffers = unit_latent_stats(model.config.latent_channels)
  encode = jax.jit(lambda p, x: model.apply({"params": p, "buffers": buffers}, to_pixels(x),
                                            method=AutoencoderKLLTXVideo.encode).mean)
  total, total_sq, count = 0.0, 0.0, 0
  for video in videos:
    for start in range(0, video.shape[0] - batch_frames + 1, batch_frames):
      z = np.asarray(encode(params, jnp.asarray(video[None, start:start + batch_frames])), np.float64)
      z = z.reshape(-1, z.shape[-1])
      total, total_sq, count = total + z.sum(0), total_sq + np.square(z).sum(0), count + z.shape[0]
  if not count:
    raise ValueError(f"latent_stats: no video with {batch_frames} frames or more")
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 1e-12))
  return {"latents_mean": mean.astype(np.float32), "latents_std": std.astype(np.float32)}
