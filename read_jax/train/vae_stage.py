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

A causal decoder for streaming (docs/design.md §3.10, ``configs/demo_vae.py:causal``, ``configs/vae_ltx_causal.py``)
is a fine-tune of a trained VAE: ``config.init_checkpoint`` a VAE in diffusers layout (or an LTX-Video single
file) or a run, ``model.decoder_causal=True``, ``init_causal_decoder=True`` (its non-causal decoder's future taps
moved onto the present: ``read_jax.models.vae.causal_decoder_params``) and ``freeze_encoder=True``: the encoder
and so the latents stay as they are, and the diffusion model trained on them keeps working; the loss is the
same. The frozen encoder runs forward only (its gradient is stopped, so XLA computes no backward for it).
With ``init_narrow_decoder=True`` the model's decoder may be narrower and shallower than the checkpoint's
(``decoder_block_out_channels``, ``decoder_layers_per_block``): it starts from the checkpoint's leading channels
and resnets (``read_jax.models.vae.narrow_decoder_params``), the live decoder's cheaper form (docs/demo.md).

``read_jax.demo.vae`` drives this stage's loss and the loop's train step on in-memory synthetic clips for a
wall-clock budget (scripts/train_demo_vae.py): one definition of the VAE training step for both paths.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.convert.vae import load_vae
from read_jax.data import records
from read_jax.files import CheckpointError, read_json
from read_jax.models.vae import (AutoencoderKLLTXVideo, causal_decoder_params, compression_ratios,
                                 decoder_loss, inflate_image_params, narrow_decoder_params, to_pixels, training_loss,
                                 unit_latent_stats)
from read_jax.train import checkpoint as ckpt_lib
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
    if "latents" in batch:  # given latents and the frames they should decode to: the decoder alone
      if not self.config.freeze_encoder:
        raise ValueError("VAE stage: a batch of latents trains the decoder only (set config.freeze_encoder=True)")
      return decoder_loss(self.model, {"params": params, "buffers": self.buffers}, batch["latents"],
                          to_pixels(batch["video"]), motion_weight=l.motion_weight,
                          decode_timestep=l.decode_timestep, temporal_weight=l.temporal_weight)
    if self.config.freeze_encoder:  # no gradient into the encoder: XLA drops its backward pass
      params = {**params, "encoder": jax.lax.stop_gradient(params["encoder"])}
    return training_loss(self.model, {"params": params, "buffers": self.buffers}, to_pixels(batch["video"]), key,
                         kl_weight=l.kl_weight, sample_posterior=l.sample_posterior, motion_weight=l.motion_weight,
                         decode_timestep=l.decode_timestep, decode_noise_scale=l.decode_noise_scale,
                         temporal_weight=l.temporal_weight)

  def trainable(self, params):
    if not self.config.freeze_encoder:
      return None
    return {k: jax.tree.map(lambda _: k != "encoder", v) for k, v in params.items()}

  def adapt_init_params(self, params):
    # config.init_from_image: the init checkpoint saw single frames only (configs/demo_vae.py:image);
    # config.init_causal_decoder: its decoder is not causal, this model's is (configs/demo_vae.py:causal).
    if self.config.init_from_image:
      params = inflate_image_params(params, self.model.config)
    if self.config.init_causal_decoder:
      if not self.model.config.decoder_causal:
        raise CheckpointError("config.init_causal_decoder: the model's decoder is not causal "
                              "(set config.model.decoder_causal=True)")
      params = causal_decoder_params(params)
    return params

  def init_from_checkpoint(self, path: str, fresh_params):
    """Params from ``config.init_checkpoint``: a VAE in diffusers layout or an LTX-Video single file (its
    config must be the model's up to ``decoder_causal``), else a training run (the loop's generic restore)."""
    if not is_vae_weights(path):
      abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), fresh_params)
      return ckpt_lib.restore_params(path, abstract, "vae")
    model, variables = load_vae(path)
    ours, theirs = self.model.config, model.config
    narrow = self.config.get("init_narrow_decoder", False)
    differ = sorted(k for k in ours.to_diffusers() if k != "decoder_causal"
                    and not (narrow and k in ("decoder_block_out_channels", "decoder_layers_per_block"))
                    and ours.to_diffusers()[k] != theirs.to_diffusers()[k])
    if differ:
      raise CheckpointError(f"config.init_checkpoint={path}: its VAE config differs from config.model in {differ}")
    if self.config.init_causal_decoder and theirs.decoder_causal:
      raise CheckpointError(f"config.init_checkpoint={path}: its decoder is causal already; "
                            "config.init_causal_decoder=True would move its taps again (set it False)")
    params = variables["params"]
    if narrow:  # a smaller decoder starts from the checkpoint's leading channels and resnets
      try:
        params = narrow_decoder_params(params, fresh_params)
      except ValueError as e:  # a wider or deeper decoder than the checkpoint's
        raise CheckpointError(f"config.init_checkpoint={path}: {e}") from None
    return jax.tree.map(lambda a, f: np.asarray(a, f.dtype), params, fresh_params)

  def datasets(self, process_index, process_count):
    d = self.config.data
    return train_val_datasets(d, _crop_uint8("video", d.num_frames, d.crop), process_index, process_count)


def is_vae_weights(path: str) -> bool:
  """True for a VAE that ``read_jax.convert.load_vae`` reads (a diffusers AutoencoderKLLTXVideo directory or a
  single .safetensors file), False for anything else (a training run's workdir)."""
  path = os.path.expanduser(path)
  if os.path.isfile(path):
    return path.endswith(".safetensors")
  config = os.path.join(path, "config.json")
  if not os.path.isfile(config) or os.path.isdir(os.path.join(path, "checkpoints")):
    return False
  return read_json(config).get("_class_name") == "AutoencoderKLLTXVideo"


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
