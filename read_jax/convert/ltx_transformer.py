"""LTX-Video transformer weights ↔ A2V-DiT params.

Sources :func:`load_transformer` reads (safetensors only):
  * a diffusers ``LTXVideoTransformer3DModel`` directory (config.json + diffusion_pytorch_model*.safetensors);
  * an original single-file LTX-Video checkpoint (keys ``model.diffusion_model.*``, VAE keys ``vae.*``
    ignored), renamed as diffusers' ``convert_ltx_transformer_checkpoint_to_diffusers`` does.
The key/layout mapping itself is :mod:`read_jax.convert.torch_layout` (our modules carry diffusers' names).
The audio cross-attention (``transformer_blocks/audio_attn``) is not in LTX checkpoints: it is freshly
initialised with a zero output projection, so the loaded model computes exactly what LTX computes
(paper C.1). A checkpoint with more blocks than the config keeps the first ``num_layers`` (warning);
fewer blocks, or any missing/unexpected/mis-shaped key, is one :class:`CheckpointError`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from read_jax.files import (CheckpointError, read_diffusers_dir, read_safetensors, safetensors_metadata,
                                  write_json, write_safetensors)
from read_jax.convert.torch_layout import flax_to_torch, torch_to_flax
from read_jax.models.a2v_dit import A2VDiT, Attention, build_model, full_size_fields, param_shapes

STACKED = ("transformer_blocks",)
AUDIO = "audio_attn"  # the A2V-DiT addition inside every block; absent from LTX checkpoints
ORIGINAL_PREFIX = "model.diffusion_model."
# Original LTX-Video names → diffusers names (facts from diffusers' single-file loader), applied in order.
_ORIGINAL_RENAMES = (("model.diffusion_model.", ""), ("patchify_proj", "proj_in"), ("adaln_single", "time_embed"),
                     ("q_norm", "norm_q"), ("k_norm", "norm_k"))
# diffusers config.json → A2VDiT fields.
_CONFIG_FIELDS = {"in_channels": "in_channels", "out_channels": "out_channels", "num_layers": "num_layers",
                  "num_attention_heads": "num_heads", "attention_head_dim": "head_dim",
                  "cross_attention_dim": "cross_attention_dim", "caption_channels": "caption_channels",
                  "norm_eps": "norm_eps"}
# diffusers config values this port implements (anything else is refused, not silently mis-loaded).
_FIXED = {"patch_size": 1, "patch_size_t": 1, "activation_fn": "gelu-approximate",
          "qk_norm": "rms_norm_across_heads", "norm_elementwise_affine": False, "attention_bias": True,
          "attention_out_bias": True}


def convert_original_state_dict(state_dict: dict) -> dict:
  """Original single-file LTX-Video keys → diffusers keys (transformer only; everything else dropped)."""
  out = {}
  for key, value in state_dict.items():
    if not key.startswith(ORIGINAL_PREFIX) or "vae" in key:
      continue
    for old, new in _ORIGINAL_RENAMES:
      key = key.replace(old, new)
    out[key] = value
  return out


def _default_model_config() -> dict:
  """The full-size architecture, computed in float32 without remat (a training config's bf16 + remat are
  settings of a run, not of the weights)."""
  return full_size_fields(dtype="float32", remat="none")


def _as_model_config(config) -> dict:
  if config is None:
    return _default_model_config()
  if "model" in config:
    config = config["model"]
  return dict(config)


def config_from_diffusers(diffusers_config: dict, base: dict | None = None) -> dict:
  """A2VDiT fields from a diffusers config.json; fields LTX lacks (audio, RoPE fps...) come from ``base``."""
  for key, value in _FIXED.items():
    if key in diffusers_config and diffusers_config[key] != value:
      raise CheckpointError(f"config.json: {key}={diffusers_config[key]!r} is not supported (only {value!r})")
  out = dict(base or _default_model_config())
  for src, dst in _CONFIG_FIELDS.items():
    if src in diffusers_config:
      out[dst] = diffusers_config[src]
  return out


def _check_against(model_config: dict, diffusers_config: dict, path: str) -> dict:
  """A given config must agree with the checkpoint's config.json (num_layers aside: extra blocks are cut)."""
  theirs = config_from_diffusers(diffusers_config, model_config)
  differ = [f"{k}: config {model_config[k]!r} vs checkpoint {theirs[k]!r}" for k in _CONFIG_FIELDS.values()
            if k != "num_layers" and model_config[k] != theirs[k]]
  if differ:
    raise CheckpointError(f"{path}: the config does not match the checkpoint's config.json: " + "; ".join(differ))
  return model_config


def _config_from_original(state_dict: dict, metadata: dict, base: dict) -> dict:
  """A2VDiT fields inferred from an original checkpoint's shapes (head width 64, LTX's, unless the
  file's metadata config says otherwise)."""
  try:
    dim, in_channels = state_dict["proj_in.weight"].shape
    out = dict(base, in_channels=int(in_channels), out_channels=int(state_dict["proj_out.weight"].shape[0]),
               caption_channels=int(state_dict["caption_projection.linear_1.weight"].shape[1]),
               cross_attention_dim=int(state_dict["transformer_blocks.0.attn2.to_k.weight"].shape[1]),
               num_layers=_num_blocks(state_dict))
  except KeyError as e:
    raise CheckpointError(f"original LTX checkpoint: no {e.args[0]} tensor") from None
  heads = None
  if "config" in metadata:
    heads = json.loads(metadata["config"]).get("transformer", {}).get("num_attention_heads")
  head_dim = dim // heads if heads else 64
  if dim % head_dim:
    raise CheckpointError(f"original LTX checkpoint: width {dim} is not a multiple of head width {head_dim}; "
                          "pass config=")
  out.update(num_heads=int(dim // head_dim), head_dim=int(head_dim))
  return out


def _num_blocks(state_dict: dict) -> int:
  ids = {int(m.group(1)) for k in state_dict if (m := re.match(r"transformer_blocks\.(\d+)\.", k))}
  return max(ids) + 1 if ids else 0


def _keep_first_blocks(state_dict: dict, num_layers: int, what: str) -> dict:
  have = _num_blocks(state_dict)
  if have > num_layers:
    warnings.warn(f"{what}: checkpoint has {have} transformer blocks, the model {num_layers}: "
                  f"keeping blocks 0..{num_layers - 1}")
    return {k: v for k, v in state_dict.items()
            if not (m := re.match(r"transformer_blocks\.(\d+)\.", k)) or int(m.group(1)) < num_layers}
  return state_dict


def split_audio(params: dict) -> tuple[dict, dict]:
  """(LTX params, audio attention params [layers, ...]) of an A2V-DiT param tree."""
  blocks = dict(params["transformer_blocks"])
  audio = blocks.pop(AUDIO, None)
  return dict(params, transformer_blocks=blocks), audio


def merge_audio(ltx: dict, audio: dict) -> dict:
  return dict(ltx, transformer_blocks=dict(ltx["transformer_blocks"], **{AUDIO: audio}))


def init_audio_params(model: A2VDiT, key) -> dict:
  """Fresh audio cross-attention params stacked over layers, output projection zero (paper C.1)."""
  init = _audio_init_fn(model.num_heads, model.head_dim, model.audio_tokens, model.audio_dim,
                        str(jnp.dtype(model.dtype)), str(jnp.dtype(model.param_dtype)))
  return init(jax.random.split(key, model.num_layers))


@functools.lru_cache(maxsize=16)
def _audio_init_fn(num_heads, head_dim, audio_tokens, audio_dim, dtype, param_dtype):
  """One compiled initialiser per attention shape (loading twice does not compile twice)."""
  dim = num_heads * head_dim
  attn = Attention(num_heads, head_dim, dim, context_axis="audio", zero_out=True, dtype=jnp.dtype(dtype),
                   param_dtype=jnp.dtype(param_dtype))
  q = jnp.zeros((1, 1, dim), dtype)
  c = jnp.zeros((1, audio_tokens, audio_dim), dtype)
  return jax.jit(jax.vmap(lambda k: nn.unbox(attn.init(k, q, c)["params"])))


def params_from_state_dict(state_dict: dict, model: A2VDiT, *, key=None, what: str = "checkpoint") -> dict:
  """diffusers-named LTX state dict (numpy) → A2V-DiT params (LTX weights + fresh zero-output audio attention)."""
  state_dict = _keep_first_blocks(state_dict, model.num_layers, what)
  ltx_target, _ = split_audio(param_shapes(model))
  ltx = torch_to_flax(state_dict, ltx_target, stacked=STACKED, what=what)
  ltx = jax.tree_util.tree_map(lambda a, s: np.asarray(a, s.dtype), ltx, ltx_target)
  audio = init_audio_params(model, jax.random.key(0) if key is None else key)
  return merge_audio(ltx, jax.tree_util.tree_map(np.asarray, audio))


def load_transformer(path: str, config=None, num_layers: int | None = None, *, key=None):
  """``(A2VDiT module, params)`` from a diffusers directory or an original single-file LTX checkpoint.

  config: ``config`` or ``config.model`` of ``configs/a2v_dit.py`` (the architecture; its shapes must
    match the checkpoint's). None: taken from the checkpoint (config.json, or the shapes of an original
    file) with the remaining fields (audio width, fps, dtype...) from the default config.
  num_layers: keep this many blocks (overrides the config's).
  key: PRNG key of the audio attention's initialisation (default ``jax.random.key(0)``).
  """
  if os.path.isdir(path):
    diffusers_config, state_dict = read_diffusers_dir(path)
    model_config = (_check_against(_as_model_config(config), diffusers_config, path) if config is not None
                    else config_from_diffusers(diffusers_config))
  elif os.path.isfile(path):
    if not path.endswith(".safetensors"):
      raise CheckpointError(f"{path}: not a .safetensors file (only safetensors are read)")
    raw = read_safetensors(path)
    if not any(k.startswith(ORIGINAL_PREFIX) for k in raw):
      raise CheckpointError(f"{path}: no '{ORIGINAL_PREFIX}*' keys: not an original LTX-Video checkpoint")
    state_dict = convert_original_state_dict(raw)
    model_config = (_as_model_config(config) if config is not None
                    else _config_from_original(state_dict, safetensors_metadata(path), _default_model_config()))
  else:
    raise CheckpointError(f"{path}: no such file or directory")
  if num_layers is not None:
    model_config["num_layers"] = int(num_layers)
  model = build_model(model_config)
  return model, params_from_state_dict(state_dict, model, key=key, what=path)


def diffusers_config(model: A2VDiT) -> dict:
  """config.json of the LTX part, as diffusers' ``LTXVideoTransformer3DModel`` reads it."""
  cfg = {"_class_name": "LTXVideoTransformer3DModel", **_FIXED}
  cfg.update({src: getattr(model, dst) for src, dst in _CONFIG_FIELDS.items()})
  return cfg


def export_transformer(params: dict, config, out_dir: str) -> None:
  """Write the LTX part of ``params`` as a diffusers directory (the audio attention is left out)."""
  model = build_model(_as_model_config(config))
  ltx, _ = split_audio(params)
  tensors = flax_to_torch(jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), ltx), stacked=STACKED)
  os.makedirs(out_dir, exist_ok=True)
  write_safetensors(os.path.join(out_dir, "diffusion_pytorch_model.safetensors"), tensors)
  write_json(os.path.join(out_dir, "config.json"), diffusers_config(model))
