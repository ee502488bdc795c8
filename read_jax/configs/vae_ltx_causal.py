"""LTX-Video's VAE decoder fine-tuned causal, for streaming decode in live sessions (docs/design.md §3.10; stage "vae",
read_jax/train/vae_stage.py).

  configs/vae_ltx_causal.py                 LTX-Video 0.9.1's VAE (config.init_checkpoint: its weights), decoder causal
  configs/vae_ltx_causal.py:variant=0.9.5   the same for 0.9.5's
  configs/vae_ltx_causal.py:live            the live decoder: the same, cut smaller (vae_variants.live_decoder)
  configs/vae_ltx_causal.py:tiny            the tiny 0.9.1 architecture from scratch: 4 steps on one CPU (~1 min)

LTX-Video's decoder is not causal: streamed exactly it must hold back its whole future receptive field,
``read_jax.models.vae.stream_lookahead`` = 31 latent frames (9.6 s) for 0.9.1's. A causal decoder streams with no
look-ahead. The recipe: start from the released VAE with each decoder conv's future taps moved onto the present
frame (``init_causal_decoder``: ``read_jax.models.vae.causal_decoder_params``), freeze the encoder (its latents,
and the A2V-DiT trained on them, stay exactly as they are) and fine-tune the decoder with the stage's
reconstruction loss on real video at a low learning rate:

  python scripts/train.py --config vae_ltx_causal.py --workdir runs/vae_causal \\
      --config.init_checkpoint=/path/to/LTX-Video/vae --config.data.train_glob='frames/train-*'

The frame shards come from ``read_jax.data.preprocess.write_frame_shards`` (videos at ``data.resolution``).
Export keeps the released VAE's latent statistics (the encoder did not change): write the run's params with
``read_jax.convert.export_vae`` and the init VAE's ``buffers``. LTX trained its decoder with perceptual and
adversarial terms besides L1; this stage has L1 only (enough for the demo's flat faces), so watch fine detail
on a long run, or keep it short: the moved taps start close (a still video decodes as before).

The live decoder (``:live``) is that recipe on a smaller decoder, the released one's cut by
``read_jax.models.vae_variants.live_decoder`` (half width, no resnets at full resolution): it
starts far from the released decoder's output (the cut draws little at first), so it trains longer at a higher
rate, with the frame-difference term. On the demo the same cut, distilled on the live model's own latents
(scripts/train_demo_vae.py --decoder-widths/--decoder-layers), is the demo's live decoder: a third of the decode
time, smaller seams and less jitter, lip sync 0.005 under the wide decoder's (docs/demo.md, "The live decoder cut to
a third of the cost"); at full size its quality is not measured.
"""

import ml_collections

from read_jax.config import load_config, parse_arg
from read_jax.models.vae_variants import live_decoder


def get_config(arg=None):
  arg = parse_arg(arg, tiny=False, variant="0.9.1", live=False)
  c = ml_collections.ConfigDict()
  c.stage = "vae"  # read_jax.train.stages.STAGES key
  c.seed = 0
  c.dtype = "bfloat16"  # compute dtype (norms and the loss stay float32)
  c.param_dtype = "float32"
  c.init_checkpoint = "LTX-Video/vae"  # the released VAE: a diffusers directory or the single .safetensors file
  c.init_from_image = False  # (a from-scratch image warm-up's option; not this recipe's)
  c.init_causal_decoder = True  # move the released decoder's future taps onto the present (causal_decoder_params)
  c.freeze_encoder = True  # the encoder and its latents stay the released ones
  c.init_narrow_decoder = False  # a smaller decoder (narrower blocks, fewer resnets) cut from the released one
  model = load_config(f"vae_ltx.py:{arg.variant}" + (",tiny" if arg.tiny else "")).to_dict()
  c.model = {k: v for k, v in model.items() if k not in ("dtype", "param_dtype")}  # configs/vae_ltx.py keys
  c.model.decoder_causal = True
  c.loss = ml_collections.ConfigDict(dict(
      kl_weight=1e-6,  # the stage's; with the encoder frozen the KL is a constant
      sample_posterior=False,  # decode the posterior mean: the latents the diffusion model is trained on
      motion_weight=0.0,  # > 0: pixels that move within a window weigh up to 1 + this in the L1 (training_loss)
      temporal_weight=0.0,  # > 0: also the L1 of frame-to-frame differences, so weighted (training_loss)
      decode_timestep=0.05,  # the timestep LTX-Video 0.9.1's pipeline decodes at (its decoder is conditioned on it)
      decode_noise_scale=0.025,  # and the noise it mixes into the latents first: z ← (1 − s)·z + s·ε
  ))
  c.data = ml_collections.ConfigDict(dict(
      train_glob="data/frames/train-*.array_record",  # read_jax.data.preprocess.write_frame_shards
      val_glob="data/frames/val-*.array_record",
      resolution=512,  # frame side (the shards' frames must have it)
      crop=256,  # random square crops: the decoder is convolutional; time is what the fine-tune is about
      num_frames=41,  # 1 + 8·5: every window has latent frames with four before them, as a live stream has
      batch_size=8,
      shuffle_seed=0,
      val_seed=1,
      val_batches=8,  # 0 = the whole split
      workers=4,
  ))
  c.train = ml_collections.ConfigDict(dict(
      steps=5000, lr=1e-5, end_lr_fraction=0.1, warmup_steps=200, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.0,
      grad_clip=1.0, accum_steps=1, log_every=50, eval_every=500, ckpt_every=500, keep_checkpoints=2,
      max_nonfinite_in_row=20, progress_bar=True, pause_after_checkpoint_s=0.0))
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  c.sharding = ml_collections.ConfigDict(dict(rules=[("batch", ("data", "fsdp"))], fallback="replicated"))
  if arg.live:  # the live decoder: cut from the released one, then fine-tuned causal as above, longer and faster
    c.model.update(live_decoder(c.model))
    c.init_narrow_decoder = True
    c.loss.temporal_weight = 3.0  # the demo's small live decoder: 10 smoothed its mouth too, 1 jittered (docs/demo.md)
    c.train.update(dict(steps=20000, lr=1e-4))
  if arg.tiny:  # from scratch (nothing to move), 32² crops of 17 frames, 4 steps
    c.dtype = "float32"
    c.init_checkpoint = ""
    c.init_causal_decoder = False
    c.init_narrow_decoder = False
    c.freeze_encoder = False
    c.data.update(dict(resolution=64, crop=32, num_frames=17, batch_size=2, val_batches=1, workers=1))
    c.train.update(dict(steps=4, warmup_steps=1, lr=1e-4, log_every=2, eval_every=0, ckpt_every=4,
                        progress_bar=False))
  return c
