"""The LTX-Video causal VAE (read_jax.models.vae), in every variant diffusers' AutoencoderKLLTXVideo expresses.

  get_config("0.9.0")        full size, plain decoder (diffusers' defaults: 419,193,649 parameters)
  get_config("0.9.1")        full size, timestep-conditioned decoder, noise injection, residual upsampling
  get_config("0.9.5")        full size, 0.9.1's decoder + the 0.9.5 encoder (LTXVideo095DownBlock3D, 2048 ch)
  get_config("tiny")         a tiny 0.9.0 (random weights; tests and benchmarks)
  get_config("0.9.1,tiny")   a tiny variant of any version; ``key=value`` items override, e.g. "tiny,latent_channels=4"

Every key except ``dtype``/``param_dtype`` is a key of diffusers' ``config.json`` for
AutoencoderKLLTXVideo, with the same meaning, so a diffusers config maps 1:1 onto the module.
"""

import ml_collections

VARIANTS = ("0.9.0", "0.9.1", "0.9.5")

# diffusers' AutoencoderKLLTXVideo defaults (= LTX-Video 0.9.0).
_BASE = dict(
  in_channels=3,  # pixel channels in
  out_channels=3,  # pixel channels out
  latent_channels=128,  # latent channels (the DiT's token width)
  block_out_channels=(128, 256, 512, 512),  # encoder widths
  down_block_types=("LTXVideoDownBlock3D",) * 4,  # "LTXVideoDownBlock3D" (0.9.0/0.9.1) or "LTXVideo095DownBlock3D"
  decoder_block_out_channels=(128, 256, 512, 512),  # decoder widths (listed encoder-side first)
  layers_per_block=(4, 3, 3, 3, 4),  # resnets per encoder down block, last entry: mid block
  decoder_layers_per_block=(4, 3, 3, 3, 4),  # resnets per decoder block, first entry: mid block (reversed order)
  spatio_temporal_scaling=(True, True, True, False),  # encoder block i downsamples
  decoder_spatio_temporal_scaling=(True, True, True, False),  # decoder block i upsamples (reversed order)
  decoder_inject_noise=(False, False, False, False, False),  # per-channel spatial noise in decoder resnets
  downsample_type=("conv", "conv", "conv", "conv"),  # 0.9.5 blocks: conv | spatial | temporal | spatiotemporal
  upsample_residual=(False, False, False, False),  # depth-to-space residual around each upsampler
  upsample_factor=(1, 1, 1, 1),  # channel reduction of each upsampler
  timestep_conditioning=False,  # decoder AdaLN-like scale/shift from the decode timestep (0.9.1+)
  patch_size=4,  # spatial pixel patch folded into channels
  patch_size_t=1,  # temporal pixel patch
  resnet_norm_eps=1e-6,  # LayerNorm eps of shortcut norms
  scaling_factor=1.0,  # latent normalisation: (z - mean) * scaling_factor / std
  encoder_causal=True,  # encoder replicate-pads the first frame only (causal in time)
  decoder_causal=False,  # decoder pads both ends
  spatial_compression_ratio=None,  # None: patch_size * 2 ** sum(spatio_temporal_scaling)
  temporal_compression_ratio=None,  # None: patch_size_t * 2 ** sum(spatio_temporal_scaling)
)

_FULL = {
  "0.9.0": {},
  "0.9.1": dict(
    decoder_block_out_channels=(256, 512, 1024),
    decoder_layers_per_block=(5, 6, 7, 8),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(True, True, True, False),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=True,
  ),
  "0.9.5": dict(
    block_out_channels=(128, 256, 512, 1024, 2048),
    down_block_types=("LTXVideo095DownBlock3D",) * 4,
    layers_per_block=(4, 6, 6, 2, 2),
    spatio_temporal_scaling=(True, True, True, True),
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    decoder_block_out_channels=(256, 512, 1024),
    decoder_layers_per_block=(5, 5, 5, 5),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, False, False, False),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=True,
    spatial_compression_ratio=32,
    temporal_compression_ratio=8,
  ),
}

# Tiny variants: the full sizes' block structure (same shortcut / conv_in / conv_out resnets, same
# compression: 32× space, 8× time) with few channels and one layer per block.
_TINY = {
  "0.9.0": dict(
    latent_channels=8,
    block_out_channels=(8, 16, 32, 32),
    decoder_block_out_channels=(8, 16, 32, 32),
    layers_per_block=(1, 1, 1, 1, 1),
    decoder_layers_per_block=(1, 1, 1, 1, 1),
  ),
  "0.9.1": dict(
    latent_channels=8,
    block_out_channels=(8, 16, 32, 32),
    layers_per_block=(1, 1, 1, 1, 1),
    decoder_block_out_channels=(8, 16, 32),
    decoder_layers_per_block=(1, 1, 1, 1),
  ),
  "0.9.5": dict(
    latent_channels=8,
    block_out_channels=(8, 16, 32, 32, 64),
    layers_per_block=(1, 1, 1, 1, 1),
    decoder_block_out_channels=(8, 16, 32),
    decoder_layers_per_block=(1, 1, 1, 1),
  ),
}


def get_config(arg=None):
  """``arg``: comma-separated items: a version (default 0.9.0), ``tiny``, and ``key=value`` overrides."""
  variant, tiny, overrides = "0.9.0", False, []
  for item in filter(None, (arg or "").split(",")):
    if item in VARIANTS:
      variant = item
    elif item == "tiny":
      tiny = True
    elif "=" in item:
      overrides.append(item)
    else:
      raise ValueError(f"configs/vae_ltx.py: argument {item!r} is not one of {VARIANTS}, 'tiny' or key=value")
  c = ml_collections.ConfigDict(dict(_BASE))
  c.update(_FULL[variant])
  if tiny:
    c.update(_TINY[variant])
  c.dtype = "float32"  # compute dtype
  c.param_dtype = "float32"  # parameter storage dtype
  if overrides:
    from read_jax.config import apply_overrides
    apply_overrides(c, [f"config.{o}" for o in overrides])
  return c
