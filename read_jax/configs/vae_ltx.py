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

from read_jax.config import apply_overrides
from read_jax.models.vae_variants import VARIANTS, variant_fields


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
  c = ml_collections.ConfigDict(variant_fields(variant, tiny))
  c.dtype = "float32"  # compute dtype
  c.param_dtype = "float32"  # parameter storage dtype
  if overrides:
    apply_overrides(c, [f"config.{o}" for o in overrides])
  return c
