"""Stage 1: SpeechAE pre-training on Whisper features (docs/design.md §3.3, §3.6; paper §3, Eq. 7–9).

  configs/speechae.py          the paper setting: lr 1e-4, α = 10, β = 1, F = 121 frames, paper sizes
  configs/speechae.py:tiny     tiny model and clips, 80 steps: trains on one CPU in seconds

  python scripts/train.py --config speechae.py --workdir DIR --config.data.train_glob='feats/train-*'

``config.model`` holds exactly the fields passed as ``SpeechAE(**config.model)``; dtypes are separate.
"""

import ml_collections

from read_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, tiny=False)
  c = ml_collections.ConfigDict()
  c.stage = "speechae"  # read_jax.train.stages.STAGES key
  c.seed = 0  # init and per-step keys (fold_in(key, step))
  c.dtype = "float32"  # compute dtype ("bfloat16" on accelerators); the loss is float32 regardless
  c.param_dtype = "float32"  # param storage dtype
  # Params of another run's checkpoint (a workdir, its checkpoints/ or one step dir) to start from
  # when this workdir has none; "" = from scratch. Optimizer and data position start fresh.
  c.init_checkpoint = ""

  c.model = ml_collections.ConfigDict(dict(
      feature_dim=384,  # DA: Whisper-tiny width
      window=10,  # Hw: Whisper frames per video frame
      hidden_dim=1024,  # D: encoder/decoder width (not in the paper; our choice)
      latent_tokens=2,  # hw: speech tokens per latent frame
      latent_dim=2048,  # dA: speech token width (= the A2V-DiT width)
      kernel_size=3,  # causal conv taps
  ))
  c.loss = ml_collections.ConfigDict(dict(
      alpha=10.0,  # α, weight of the MSE term (paper §4)
      beta=1.0,  # β, weight of the contrastive term (paper §4)
      temperature=0.1,  # τ of Eq. 8 (not given in the paper)
  ))
  c.data = ml_collections.ConfigDict(dict(
      train_glob="data/speech/train-*.array_record",  # ArrayRecord shards from scripts/extract_speech.py
      val_glob="data/speech/val-*.array_record",  # held-out shards (paper: 5% of the clips)
      num_frames=121,  # F = 1 + 8k video frames per random crop (the 4.84 s training clip)
      batch_size=32,  # global batch, split over processes and data×fsdp devices (paper: not given)
      shuffle_seed=0,  # shuffle order and random-crop positions
      val_seed=1,  # crop positions of the validation clips (fixed, so eval losses compare)
      val_batches=16,  # validation batches per eval (0 = the whole split)
      workers=4,  # grain reader threads per process
  ))
  c.train = ml_collections.ConfigDict(dict(
      steps=100_000,  # optimizer updates (one per step; the paper does not give the length)
      lr=1e-4,  # peak learning rate (paper §4)
      end_lr_fraction=0.1,  # cosine decays to lr × this at the last step
      warmup_steps=1000,  # linear warmup from 0
      b1=0.9,  # Adam β1
      b2=0.999,  # Adam β2
      eps=1e-8,  # Adam ε
      weight_decay=0.01,  # AdamW decoupled decay, matrices only
      grad_clip=1.0,  # global-norm clip (0 = off)
      accum_steps=1,  # micro-batches per step (scanned inside the step; batch_size must divide)
      log_every=50,  # steps between metric reads (host sync), TensorBoard and progress-bar updates
      eval_every=2000,  # steps between validation passes (0 = never)
      ckpt_every=2000,  # steps between checkpoints (also at the end and on SIGTERM)
      keep_checkpoints=3,  # newest checkpoints kept
      max_nonfinite_in_row=20,  # halt after this many consecutive skipped (non-finite) steps; checked at log steps
      progress_bar=True,  # tqdm bar on process 0
      pause_after_checkpoint_s=0.0,  # test hook: block on each save, then sleep (to SIGKILL at a known step)
  ))
  c.mesh = ml_collections.ConfigDict(dict(
      data=-1,  # pure data parallel (-1 = the devices left over)
      fsdp=1,  # data parallel with params split (ZeRO-3)
      tensor=1,  # model-dimension split
  ))
  c.sharding = ml_collections.ConfigDict(dict(
      # logical axis name → mesh axis (or None = replicated); names the models use.
      rules=[("batch", ("data", "fsdp")), ("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"),
             ("kv", None), ("length", None)],
      # params without logical names (read_jax.sharding.FALLBACK_POLICIES): "fsdp_largest" | "replicated"
      fallback="fsdp_largest",
  ))

  if arg.tiny:
    c.model.update(dict(feature_dim=12, window=4, hidden_dim=32, latent_tokens=2, latent_dim=16))
    c.data.update(dict(num_frames=17, batch_size=8, val_batches=0, workers=1))
    c.mesh.data = 1  # one device (sharding tests name their meshes)
    c.train.update(dict(steps=80, lr=3e-3, warmup_steps=8, log_every=10, eval_every=40, ckpt_every=40,
                        max_nonfinite_in_row=5, progress_bar=False))
  return c
