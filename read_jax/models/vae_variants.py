"""The LTX-Video VAE's variants as tables: every version diffusers' ``AutoencoderKLLTXVideo`` expresses.

  variant_fields("0.9.0")              full size, plain decoder (diffusers' defaults: 419,193,649 parameters)
  variant_fields("0.9.1")              timestep-conditioned decoder, noise injection, residual upsampling
  variant_fields("0.9.5")              0.9.1's decoder + the 0.9.5 encoder (LTXVideo095DownBlock3D, 2048 ch)
  variant_fields("0.9.0", tiny=True)   the same block structure and compression with few channels (tests)

Every key is a key of diffusers' ``config.json`` for AutoencoderKLLTXVideo, with the same meaning. The
package needs these at run time (an original single-file checkpoint names only its version), so they
live here; ``configs/vae_ltx.py`` builds experiment configs from them.
"""

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


def variant_fields(variant: str = "0.9.0", tiny: bool = False) -> dict:
  """The config fields of one variant (a plain dict; ``dtype`` / ``param_dtype`` not included)."""
  if variant not in VARIANTS:
    raise ValueError(f"LTX-Video VAE variant {variant!r} is not one of {VARIANTS}")
  fields = {**_BASE, **_FULL[variant]}
  if tiny:
    fields.update(_TINY[variant])
  return fields


def live_decoder(fields: dict) -> dict:
  """The live decoder's fields of a VAE's config ``fields``: every decoder block at half width, and no resnets in
  the full-resolution block (the first of ``decoder_layers_per_block``), which at 512² runs 3-D convolutions over
  eight 128² frames per latent frame: 40 % of the half-width decoder's FLOPs (``python scripts/bench.py cost``).
  The blocks are the trained decoder's otherwise, so the live decoder starts from its leading channels and resnets
  (``read_jax.models.vae.narrow_decoder_params``) and is distilled from it (configs/vae_ltx_causal.py:live; the
  demo's live decoder is the same cut of the demo VAE, docs/demo.md)."""
  layers = tuple(fields["decoder_layers_per_block"])
  return {"decoder_block_out_channels": tuple(max(1, w // 2) for w in fields["decoder_block_out_channels"]),
          "decoder_layers_per_block": (0,) + layers[1:]}
