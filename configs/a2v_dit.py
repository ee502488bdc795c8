"""A2V-DiT (DESIGN §3.4): LTX-Video transformer blocks + frame-level audio cross-attention (Eq. 10).

  configs/a2v_dit.py          full size: 24 blocks, 2048 wide, 32 heads × 64 (LTX-Video 2B minus 4 blocks)
  configs/a2v_dit.py:tiny     2 blocks, 2 heads × 8: runs on one CPU in seconds (tests)

``config.model`` holds exactly the fields of ``read_jax.models.a2v_dit.A2VDiT`` (``build_model``).
More sections (``config.train`` ...) are appended by other parts of the project.
"""

import ml_collections

from read_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, tiny=False)
  config = ml_collections.ConfigDict()

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
    remat="none",  # remat policy name (read_jax.models.a2v_dit.REMAT_POLICIES); "full" etc. for training
    dtype="float32",  # compute dtype ("bfloat16" on accelerators)
    param_dtype="float32",  # storage dtype
  ))
  # The constant prompt embedding (safetensors with prompt_embeds / prompt_attention_mask); empty: no
  # text conditioning (see read_jax.models.a2v_dit.load_text_embedding).
  config.text = ml_collections.ConfigDict(dict(path=""))

  if arg.tiny:
    config.model.update(dict(num_layers=2, num_heads=2, head_dim=8, cross_attention_dim=16, in_channels=8,
                             out_channels=8, caption_channels=12, audio_dim=10, attention="xla"))
  return config
