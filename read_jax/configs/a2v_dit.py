"""Stage 2: the A2V-DiT (docs/design.md §3.4–3.6) trained under the ANS forward process, SpeechAE fine-tuned jointly.

  configs/a2v_dit.py          full size: 24 blocks, 2048 wide, 32 heads × 64 (LTX-Video 2B minus 4 blocks);
                              the paper's training: 121 frames at 512² (17 × 16 × 16 latents), lr 1e-5,
                              batch 1 per device, gradient accumulation 4, remat, bf16 compute
  configs/a2v_dit.py:tiny     2 blocks, 2 heads × 8: runs on one CPU in seconds (tests)

  python scripts/train.py --config a2v_dit.py --workdir DIR --config.data.train_glob='clips/train-*'

``config.model`` holds exactly the fields of ``read_jax.models.a2v_dit.A2VDiT`` (``build_model``).
More sections (``config.train`` ...) are appended by other parts of the project.
"""

import ml_collections

from read_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, tiny=False)
  config = ml_collections.ConfigDict()
  config.stage = "a2v_dit"  # read_jax.train.stages.STAGES key
  config.seed = 0  # init and per-step keys (fold_in(key, step))
  # Params of another run (a stage-2 workdir) to start from when this workdir has none; "" = none.
  config.init_checkpoint = ""

  config.model = ml_collections.ConfigDict(dict(
    in_channels=128,  # VAE latent channels in
    out_channels=128,  # velocity channels out
    num_layers=24,  # transformer blocks (the paper's 24; LTX-Video checkpoints have 28: the first 24 are kept)
    num_heads=32,  # attention heads N
    head_dim=64,  # head width K; model width D = N·K = 2048
    cross_attention_dim=2048,  # text key/value width (= D)
    caption_channels=4096,  # T5-XXL prompt embedding width
    audio_dim=2048,  # dA, width of a speech latent token (SpeechAE output)
    audio_tokens=2,  # hw, speech tokens per latent frame
    norm_eps=1e-6,  # RMS norm epsilon in the blocks (LTX's)
    fps=25.0,  # video frame rate (RoPE frame coordinate = index · 8 / fps)
    vae_scale=(8, 32, 32),  # pixels per latent in (t, h, w): RoPE interpolation scale
    rope_base=(20, 2048, 2048),  # LTX's RoPE base grid
    rope_theta=10000.0,  # RoPE frequency base
    attention="auto",  # self-attention implementation: auto / xla / cudnn / splash
    remat="full",  # remat policy name (read_jax.models.a2v_dit.REMAT_POLICIES); paper C.3: gradient checkpointing
    dtype="bfloat16",  # compute dtype (float32 for CPU runs and parity checks)
    param_dtype="float32",  # storage dtype
    causal=False,  # block-causal self-attention: frame i sees z_R, the text, frames ≤ i (the KV-cached live mode)
  ))
  # The constant prompt embedding (safetensors with prompt_embeds / prompt_attention_mask); empty: no
  # text conditioning (see read_jax.convert.load_text_embedding).
  config.text = ml_collections.ConfigDict(dict(path=""))

  # The SpeechAE, fine-tuned jointly (paper C.3); fields as configs/speechae.py's model.
  config.train_speech_ae = True  # False: keep stage 1's SpeechAE frozen (only the A2V-DiT trains)
  config.speech_ae = ml_collections.ConfigDict(dict(
    feature_dim=384,  # DA: Whisper-tiny width
    window=10,  # Hw: Whisper frames per video frame
    hidden_dim=1024,  # D of the SpeechAE (our choice)
    latent_tokens=2,  # hw = model.audio_tokens
    latent_dim=2048,  # dA = model.audio_dim
    kernel_size=3,  # causal conv taps
  ))
  # The ANS forward process (Eq. 11–15, C.3).
  config.ans = ml_collections.ConfigDict(dict(
    mu=2.05,  # shifted logit-normal location: t = sigmoid(n), n ~ N(mu, sigma)
    sigma=1.0,  # its scale
    p_sync=0.5,  # motion prior dropout: synchronous timesteps [0, t2, …, t2]
    p_drop_identity=0.1,  # identity dropout: zero z_R
    p_drop_audio=0.1,  # audio dropout: zero C
    # Rolling-window patterns [0, 0 × c, τ_0 … τ_{W−1}] for the low-latency sampler (read_jax.ans.rolling); off in
    # the paper's training. p_rolling: their share of examples; rolling_noisy: the noisy-frame counts W drawn.
    p_rolling=0.0,
    rolling_noisy=(1, 2),
  ))
  config.data = ml_collections.ConfigDict(dict(
    train_glob="data/clips/train-*.array_record",  # shards from scripts/preprocess.py
    val_glob="data/clips/val-*.array_record",  # held-out clips (paper: 5%)
    latent_frames=16,  # f: latent frames after the reference (121 video frames)
    latent_height=16,  # h (512 / 32)
    latent_width=16,  # w
    batch_size=8,  # global batch (paper: 1 per device on 8 GPUs)
    shuffle_seed=0,  # shuffle order
    val_seed=1,  # fixed validation order
    val_batches=8,  # validation batches per eval (0 = the whole split)
    workers=4,  # grain reader threads per process
  ))
  config.train = ml_collections.ConfigDict(dict(
    steps=100_000,  # optimizer updates
    lr=1e-5,  # peak learning rate (paper §4.1)
    end_lr_fraction=1.0,  # cosine end as a fraction of lr (1.0 = constant after warmup)
    warmup_steps=500,  # linear warmup from 0
    b1=0.9,  # Adam β1
    b2=0.999,  # Adam β2
    eps=1e-8,  # Adam ε
    weight_decay=0.0,  # AdamW decoupled decay (matrices only)
    grad_clip=1.0,  # global-norm clip (0 = off)
    accum_steps=4,  # gradient accumulation (paper C.3)
    log_every=50,  # steps between metric reads, TensorBoard and progress-bar updates
    eval_every=2000,  # steps between validation passes (0 = never)
    ckpt_every=1000,  # steps between checkpoints (also at the end and on SIGTERM)
    keep_checkpoints=3,  # newest checkpoints kept
    max_nonfinite_in_row=20,  # halt after this many consecutive non-finite steps
    progress_bar=True,  # tqdm bar on process 0
    pause_after_checkpoint_s=0.0,  # test hook (see configs/speechae.py)
  ))
  config.mesh = ml_collections.ConfigDict(dict(
    data=1,  # pure data parallel
    fsdp=-1,  # params, grads and optimizer state split over the rest (ZeRO-3)
    tensor=1,  # model-dimension split
  ))
  config.sharding = ml_collections.ConfigDict(dict(
    # logical axis (read_jax/models/a2v_dit.py docstring) → mesh axis; None = replicated.
    rules=[("batch", ("data", "fsdp")), ("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"),
           ("kv", None), ("length", None), ("text_length", None), ("adaln", None), ("time_freq", None),
           ("caption", "fsdp"), ("audio", "fsdp"), ("channels", None), ("table", None), ("layers", None)],
    fallback="fsdp_largest",  # params without logical names (the SpeechAE): largest divisible dim over fsdp
  ))

  if arg.tiny:
    config.speech_ae.update(dict(feature_dim=12, window=4, hidden_dim=16, latent_dim=10))
    config.data.update(dict(latent_frames=2, latent_height=3, latent_width=5, batch_size=8, val_batches=0,
                            workers=1))
    config.train.update(dict(steps=60, lr=3e-3, warmup_steps=5, accum_steps=1, log_every=10, eval_every=30,
                             ckpt_every=30, max_nonfinite_in_row=5, progress_bar=False))
    config.mesh.update(dict(data=1, fsdp=1))  # one device (sharding tests name their meshes)
    config.model.update(dict(num_layers=2, num_heads=2, head_dim=8, cross_attention_dim=16, in_channels=8,
                             out_channels=8, caption_channels=12, audio_dim=10, attention="xla",
                             remat="none", dtype="float32"))
  return config
