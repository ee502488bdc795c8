"""LTX-Video VAE weights in and out: diffusers directories and original single-file checkpoints.

  load_vae(path)                    → (module, variables)   variables = {"params": ..., "buffers": ...}
  export_vae(module_or_config, variables, out_dir)            diffusers layout, loadable by
                                                               ``diffusers.AutoencoderKLLTXVideo.from_pretrained``

``path`` is either a diffusers directory (``config.json`` + ``diffusion_pytorch_model*.safetensors``,
sharded or not) or an original LTX-Video single file (``*.safetensors`` with the VAE under ``vae.``
and the model config as JSON in the safetensors metadata under ``"config"``). Only safetensors are read.

The original LTX-Video VAE is a flat list of blocks (``encoder.down_blocks.0 … 9``,
``decoder.up_blocks.0 … 9``); diffusers groups them into down/up blocks with their resnets,
samplers and width-changing resnets. The block correspondence is derived here from the config,
walking the blocks in execution order (diffusers' ``convert_ltx_vae_checkpoint_to_diffusers``
documents the same facts as fixed tables for 0.9.0 / 0.9.1 / 0.9.5; tests/test_convert_vae.py
checks this derivation against it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np


from read_jax.files import (CheckpointError, read_diffusers_dir, read_safetensors, safetensors_metadata, write_json,
                            write_safetensors)
from read_jax.convert.torch_layout import flax_to_torch, torch_to_flax
from read_jax.models.vae import AutoencoderKLLTXVideo, VAEConfig, compression_ratios, make_config
from read_jax.models.vae_variants import variant_fields

_BUFFERS = ("latents_mean", "latents_std")
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


# ----------------------------------------------------------------------------------------------
# diffusers state dict ↔ read_jax variables


def _init_shapes(module: AutoencoderKLLTXVideo):
  """Shapes of every variable, without allocating them."""
  cfg = module.config
  ks, kt = _ratios(cfg)
  x = jax.ShapeDtypeStruct((1, 1 + kt, ks, ks, cfg.in_channels), jnp.float32)
  return jax.eval_shape(lambda x: module.init(jax.random.key(0), x), x)


def _ratios(cfg):
  return compression_ratios(cfg)


def state_dict_to_variables(module: AutoencoderKLLTXVideo, state_dict: Mapping[str, np.ndarray],
                            what: str = "VAE checkpoint") -> dict:
  """A diffusers AutoencoderKLLTXVideo state dict → ``{"params", "buffers"}``; every mismatch is one error."""
  shapes = _init_shapes(module)
  target = {**shapes["params"], **shapes["buffers"]}
  tree = torch_to_flax(state_dict, target, what=what)
  param_dtype = module.param_dtype
  buffers = {k: np.asarray(tree.pop(k), np.float32) for k in _BUFFERS}
  params = jax.tree.map(lambda a: np.asarray(a, param_dtype), tree)
  return {"params": params, "buffers": buffers}


def variables_to_state_dict(variables: Mapping) -> dict[str, np.ndarray]:
  """Inverse of :func:`state_dict_to_variables` (diffusers names and layouts, numpy)."""
  tree = {**variables["params"], **variables.get("buffers", {})}
  out = flax_to_torch(jax.tree.map(np.asarray, tree))
  # np.ascontiguousarray (used by flax_to_torch) turns 0-d arrays into [1]: restore the scalar
  # decoder.timestep_scale_multiplier, which is 0-d in diffusers too
  return {k: v.reshape(()) if k.endswith("timestep_scale_multiplier") else v for k, v in out.items()}


# ----------------------------------------------------------------------------------------------
# Original LTX-Video single file → diffusers names


def _block_table(cfg: VAEConfig) -> dict[str, dict[int, str]]:
  """Original flat block index → diffusers module path, per side, from the diffusers config."""
  enc, dec = {}, {}
  ltx_095 = cfg.down_block_types[-1] == "LTXVideo095DownBlock3D"
  channels = tuple(cfg.block_out_channels)
  n = len(channels) - (1 if ltx_095 else 0)
  for i in range(n):  # resnets, downsampler, width-changing resnet (0.9.0 blocks only)
    out = channels[i + 1] if (ltx_095 or i + 1 < n) else channels[i]
    enc[len(enc)] = f"down_blocks.{i}"
    if cfg.spatio_temporal_scaling[i]:
      enc[len(enc)] = f"down_blocks.{i}.downsamplers.0"
    if cfg.down_block_types[i] == "LTXVideoDownBlock3D" and channels[i] != out:
      enc[len(enc)] = f"down_blocks.{i}.conv_out"
  enc[len(enc)] = "mid_block"
  dec[0] = "mid_block"
  channels = tuple(reversed(cfg.decoder_block_out_channels))
  scaling = tuple(reversed(cfg.decoder_spatio_temporal_scaling))
  factor = tuple(reversed(cfg.upsample_factor))
  out = channels[0]
  for i in range(len(channels)):  # width-changing resnet, upsampler, resnets
    c_in, out = out // factor[i], channels[i] // factor[i]
    if c_in != out:
      dec[len(dec)] = f"up_blocks.{i}.conv_in"
    if scaling[i]:
      dec[len(dec)] = f"up_blocks.{i}.upsamplers.0"
    dec[len(dec)] = f"up_blocks.{i}"
  return {"encoder": enc, "decoder": dec}


# leaf-level renames inside blocks, original → diffusers (applied to the path after the block prefix)
_SEGMENTS = ((".res_blocks.", ".resnets."), (".conv_shortcut.", ".conv_shortcut.conv."), (".norm3.norm.", ".norm3."),
             (".last_time_embedder.", ".time_embedder."), (".last_scale_shift_table", ".scale_shift_table"))
_STATS = {"per_channel_statistics.mean-of-means": "latents_mean", "per_channel_statistics.std-of-means": "latents_std"}


def original_to_diffusers_key(key: str, cfg: VAEConfig) -> str | None:
  """One original LTX VAE key (without ``vae.``) → its diffusers key; None for keys diffusers drops."""
  if key.startswith("per_channel_statistics."):
    return _STATS.get(key)
  table = _block_table(cfg)
  m = re.match(r"^(encoder|decoder)\.(down_blocks|up_blocks)\.(\d+)\.(.*)$", key)
  if m:
    side, _, idx, rest = m.groups()
    if int(idx) not in table[side]:
      raise CheckpointError(f"VAE single file: {key}: block {idx} does not exist in this VAE config")
    key = f"{side}.{table[side][int(idx)]}.{rest}"
  key = "." + key
  for old, new in _SEGMENTS:
    key = key.replace(old, new)
  return key[1:]


def _detect_variant(original: Mapping[str, np.ndarray]) -> str:
  """0.9.0 / 0.9.1 / 0.9.5 from the keys, as diffusers' single-file loader decides."""
  w = original.get("encoder.conv_out.conv.weight")
  if w is not None and w.shape[1] == 2048:
    return "0.9.5"
  if "decoder.last_time_embedder.timestep_embedder.linear_1.weight" in original:
    return "0.9.1"
  return "0.9.0"


def _single_file_config(path: str, original: Mapping[str, np.ndarray]) -> VAEConfig:
  """The VAE config: a diffusers-style ``vae`` entry in the metadata's ``config`` JSON if there is one,
  otherwise the full-size config of the version the keys identify (diffusers' behaviour)."""
  raw = safetensors_metadata(path).get("config")
  if raw:
    try:
      meta = json.loads(raw)
    except json.JSONDecodeError as e:
      raise CheckpointError(f"{path}: metadata 'config' is not valid JSON ({e})") from None
    vae = meta.get("vae", meta) if isinstance(meta, dict) else None
    if isinstance(vae, dict) and "block_out_channels" in vae:
      try:
        return make_config(vae)
      except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: metadata VAE config: {e}") from None
  return make_config({**variant_fields(_detect_variant(original)), "dtype": "float32", "param_dtype": "float32"})


def original_to_diffusers(original: Mapping[str, np.ndarray], cfg: VAEConfig) -> dict[str, np.ndarray]:
  """Rename a whole original VAE state dict (keys without ``vae.``)."""
  out = {}
  for k, v in original.items():
    new = original_to_diffusers_key(k, cfg)
    if new is not None:
      out[new] = v
  return out


# ----------------------------------------------------------------------------------------------
# Public entry points


def load_vae(path: str, dtype=jnp.float32, param_dtype=jnp.float32):
  """(module, variables) from a diffusers directory or an original LTX-Video single ``.safetensors`` file."""
  if os.path.isdir(path):
    config, state_dict = read_diffusers_dir(path)
    if config.get("_class_name", "AutoencoderKLLTXVideo") != "AutoencoderKLLTXVideo":
      raise CheckpointError(f"{path}/config.json: _class_name is {config['_class_name']!r}, "
                            "expected 'AutoencoderKLLTXVideo'")
    try:
      cfg = make_config(config)
    except (TypeError, ValueError) as e:
      raise CheckpointError(f"{path}/config.json: {e}") from None
  elif os.path.isfile(path):
    if not path.endswith(".safetensors"):
      raise CheckpointError(f"{path}: not a .safetensors file (only safetensors are read)")
    original = read_safetensors(path, key_prefix="vae.")
    if not original:
      raise CheckpointError(f"{path}: no 'vae.*' tensors (not an LTX-Video single-file checkpoint?)")
    cfg = _single_file_config(path, original)
    state_dict = original_to_diffusers(original, cfg)
  else:
    raise CheckpointError(f"{path}: no such file or directory")
  cfg = VAEConfig(**{**cfg.__dict__, "dtype": jnp.dtype(dtype).name, "param_dtype": jnp.dtype(param_dtype).name})
  module = AutoencoderKLLTXVideo.from_config(cfg)
  return module, state_dict_to_variables(module, state_dict, what=path)


def export_vae(module_or_config, variables: Mapping, out_dir: str) -> None:
  """Write ``config.json`` + ``diffusion_pytorch_model.safetensors`` (diffusers layout, float32 unless the
  params are stored narrower)."""
  config = module_or_config.config if isinstance(module_or_config, AutoencoderKLLTXVideo) else module_or_config
  cfg = make_config(config)
  os.makedirs(out_dir, exist_ok=True)
  tensors = variables_to_state_dict(variables)
  write_safetensors(os.path.join(out_dir, WEIGHTS_NAME), tensors, metadata={"format": "pt"})
  write_json(os.path.join(out_dir, "config.json"), cfg.to_diffusers())
