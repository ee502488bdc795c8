"""Train the demo model's VAE (configs/demo.py ``vae``) from scratch on 64² video: L1 + KL (read_jax/train/vae_stage.py).

  configs/demo_vae.py:image    warm-up on single frames (batch 16): the faces' shapes and colours, 17× cheaper per clip
  configs/demo_vae.py          then 17-frame windows of whole frames, batch 4, from the warm-up's params
                               inflated for video (init_from_image: read_jax.models.vae.inflate_image_params)
  configs/demo_vae.py:smoke    a few steps of either at configs/demo.py:tiny's sizes (the end-to-end test: "image,smoke")
  configs/demo_vae.py:causal   the bundled VAE's decoder made causal, for streaming decode (docs/design.md §3.10): a
                               fine-tune from assets/demo/vae, encoder frozen (the latents stay as they are)

scripts/train_demo.py runs the two in order; why two runs at a small learning rate, with the measurements:
docs/demo.md ("The VAE"). The bundled demo VAE was trained on GPUs by scripts/train_demo_vae.py instead (this
stage's loss and step on in-memory synthetic clips; ``--causal`` runs the causal fine-tune that way).

  python scripts/train.py --config demo_vae.py --workdir DIR --config.data.train_glob='frames/train-*'
"""

import ml_collections

from read_jax.config import load_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False, image=False, causal=False)
  c = ml_collections.ConfigDict()
  c.stage = "vae"  # read_jax.train.stages.STAGES key
  c.seed = 0
  c.dtype = "float32"  # compute dtype
  c.param_dtype = "float32"
  c.init_checkpoint = ""  # params of another run to start from ("" = from scratch)
  c.init_from_image = False  # init_checkpoint saw single frames only: inflate it for video (inflate_image_params)
  c.init_causal_decoder = False  # init_checkpoint's decoder is not causal, the model's is (causal_decoder_params)
  c.freeze_encoder = False  # train the decoder only: the encoder, and so the latents, stay as they are
  c.init_narrow_decoder = False  # a smaller decoder than init_checkpoint's (narrower blocks, fewer resnets): cut from it
  vae = load_config("demo.py:tiny" if arg.smoke else "demo.py").vae.to_dict()  # smoke: the tiny sizes
  c.model = {k: v for k, v in vae.items() if k not in ("dtype", "param_dtype")}  # configs/vae_ltx.py keys
  c.loss = ml_collections.ConfigDict(dict(
      kl_weight=1e-6,  # weight of the per-latent-element KL against the per-pixel L1 (more collapses the posterior)
      sample_posterior=False,  # decode the posterior mean (see read_jax/train/vae_stage.py)
      motion_weight=0.0,  # > 0: pixels that move within a window weigh up to 1 + this in the L1 (training_loss)
      temporal_weight=0.0,  # > 0: also the L1 of frame-to-frame differences, so weighted (training_loss)
      decode_timestep=0.0,  # timestep-conditioned decoders (LTX 0.9.1+) only: decode as the pipeline does
      decode_noise_scale=0.0,  # idem: z ← (1 − s)·z + s·ε before decoding
  ))
  c.data = ml_collections.ConfigDict(dict(
      train_glob="data/frames/train-*.array_record",  # read_jax.data.preprocess.write_frame_shards
      val_glob="data/frames/val-*.array_record",
      resolution=64,  # frame side (the shards' frames must have it)
      crop=0,  # random square crops of this side (0 = whole frames; 32 makes steps 4× cheaper)
      num_frames=17,  # frames per random window, 1 + 8k (three latent frames)
      batch_size=4,
      shuffle_seed=0,
      val_seed=1,
      val_batches=4,  # 0 = the whole split
      workers=2,
  ))
  c.train = ml_collections.ConfigDict(dict(
      steps=600, lr=1e-4, end_lr_fraction=0.1, warmup_steps=20, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.0,
      grad_clip=1.0, accum_steps=1, log_every=50, eval_every=250, ckpt_every=250, keep_checkpoints=2,
      max_nonfinite_in_row=20, progress_bar=True, pause_after_checkpoint_s=0.0))
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  c.sharding = ml_collections.ConfigDict(dict(rules=[("batch", ("data", "fsdp"))], fallback="replicated"))
  if arg.image:
    c.data.update(dict(num_frames=1, batch_size=16))
    c.train.update(dict(steps=2000, eval_every=1000, ckpt_every=1000, log_every=100))
  if arg.causal:  # the bundled VAE's own loss (its last run: motion weight 30), its decoder made causal
    c.init_checkpoint = "assets/demo/vae"
    c.model.decoder_causal = True
    c.init_causal_decoder = True
    c.freeze_encoder = True
    c.loss.motion_weight = 30.0
    c.train.update(dict(steps=2000, lr=2e-4, eval_every=500, ckpt_every=500, log_every=50))
  if arg.smoke:
    c.mesh.data = 1  # one device
    c.data.update(dict(batch_size=2, crop=32, num_frames=1 if arg.image else 9, val_batches=1, workers=1))
    c.train.update(dict(steps=4, warmup_steps=1, log_every=2, eval_every=0, ckpt_every=4, progress_bar=False))
  return c
