"""Diffusers VAE keys back to the original LTX-Video single-file layout, to write original-layout fixtures for
the loader's tests (read_jax/convert/vae.py reads that layout; nothing in the package writes it)."""

from read_jax.convert import vae as vae_convert
from read_jax.models.vae import VAEConfig


def diffusers_to_original_key(key: str, cfg: VAEConfig) -> str:
  """Inverse of :func:`original_to_diffusers_key` (to write original-layout files)."""
  for orig, ours in vae_convert._STATS.items():
    if key == ours:
      return orig
  key = "." + key
  for old, new in reversed(vae_convert._SEGMENTS[:3]):  # the last two are top-level only: handled below
    key = key.replace(new, old)
  key = key[1:]
  table = vae_convert._block_table(cfg)
  side, _, rest = key.partition(".")
  if side in table:
    # longest diffusers block path that prefixes the key
    best = max(((i, p) for i, p in table[side].items() if rest.startswith(p + ".")), key=lambda ip: len(ip[1]),
               default=None)
    if best is not None:
      block = "down_blocks" if side == "encoder" else "up_blocks"
      key = f"{side}.{block}.{best[0]}.{rest[len(best[1]) + 1:]}"
  if key.startswith("decoder.") and key.count(".") == 1 and key.endswith("scale_shift_table"):
    key = "decoder.last_scale_shift_table"
  if key.startswith("decoder.time_embedder."):
    key = "decoder.last_time_embedder." + key[len("decoder.time_embedder."):]
  return key
