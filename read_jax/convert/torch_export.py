"""A read_jax checkpoint directory ↔ a PyTorch directory (diffusers / transformers / read_jax.torch layouts).

  export_torch(ckpt_dir, out_dir)      import_torch(torch_dir, ckpt_dir)      import(export(ckpt)) is bit-exact

PyTorch directory layout (every part that the checkpoint has)::

  vae/              diffusers AutoencoderKLLTXVideo          (config.json + diffusion_pytorch_model.safetensors)
  transformer/      diffusers LTXVideoTransformer3DModel     the A2V-DiT's LTX part (no audio attention)
  audio_attention/  config.json {"read_jax_config": A2V-DiT fields} + model.safetensors with
                    transformer_blocks.{i}.audio_attn.{to_q,to_k,to_v,norm_q,norm_k,to_out.0}.*
  speech_ae/        config.json (SpeechAE fields) + model.safetensors (read_jax.torch.speech_ae names)
  whisper/          the speech encoder, a transformers Whisper (encoder only, keys model.encoder.*): the
                    checkpoint's speech_encoder/ of kind "whisper", named as transformers knows it
  pipeline.json, prompt.safetensors   copied unchanged

Load them with ``diffusers.AutoencoderKLLTXVideo.from_pretrained(out/"vae")``,
``read_jax.torch.a2v_dit.A2VDiT.from_exported(out)``, ``read_jax.torch.speech_ae.SpeechAE.from_exported(out/"speech_ae")``,
``transformers.WhisperModel.from_pretrained(out/"whisper").encoder``. torch itself is never imported
here: the files are written from numpy with the torch layouts of :mod:`read_jax.convert.torch_layout`.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np

from read_jax.convert import native, speech_encoders
from read_jax.convert.ltx_transformer import AUDIO, STACKED, diffusers_config, export_transformer, split_audio
from read_jax.convert.torch_layout import flax_to_torch, torch_to_flax
from read_jax.convert.vae import export_vae, load_vae
from read_jax.convert.whisper import export_whisper_encoder, load_whisper_encoder
from read_jax.files import CheckpointError, read_safetensors, safetensors_files, write_json, write_safetensors
from read_jax.models.a2v_dit import build_model, param_shapes
from read_jax.models.speech_ae import SpeechAE

PARTS = ("vae", "a2v_dit", "speech_ae", speech_encoders.PART)  # read_jax checkpoint directory parts
TORCH_SPEECH_ENCODERS = {"whisper": "whisper"}  # speech encoder kind → its PyTorch directory (transformers)
COPIED = ("pipeline.json", "prompt.safetensors")  # files copied unchanged both ways
TRANSFORMER_DIR, AUDIO_DIR = "transformer", "audio_attention"
AUDIO_WEIGHTS = "model.safetensors"
SPEECH_AE_FIELDS = ("feature_dim", "window", "hidden_dim", "latent_tokens", "latent_dim", "kernel_size")


def _part(ckpt_dir: str, part: str) -> str:
  return speech_encoders.part_path(ckpt_dir) if part == speech_encoders.PART else os.path.join(ckpt_dir, part)


def _present(ckpt_dir: str) -> list[str]:
  return [p for p in PARTS if os.path.isdir(_part(ckpt_dir, p))]


# ----------------------------------------------------------------------------------------------
# Parts


def speech_ae_shapes(config: dict) -> dict:
  """SpeechAE param ShapeDtypeStructs for ``config`` (SpeechAE fields), nothing allocated."""
  return native.param_shapes("speech_ae", {k: config[k] for k in SPEECH_AE_FIELDS})


def _export_speech_ae(ckpt_part: str, out: str) -> None:
  config, params = native.load_module(ckpt_part, "speech_ae")  # every key and shape checked against config
  os.makedirs(out, exist_ok=True)
  write_safetensors(os.path.join(out, "model.safetensors"), flax_to_torch(params), metadata={"format": "pt"})
  write_json(os.path.join(out, "config.json"), {"_class_name": "SpeechAE", **config})


def _import_speech_ae(part: str, ckpt_part: str) -> None:
  config_path = os.path.join(part, "config.json")
  if not os.path.isfile(config_path):
    raise CheckpointError(f"{part}: no config.json (not an exported SpeechAE directory)")
  with open(config_path) as fh:
    config = {k: v for k, v in json.load(fh).items() if k != "_class_name"}
  missing = sorted(set(SPEECH_AE_FIELDS) - set(config))
  if missing:
    raise CheckpointError(f"{config_path}: missing SpeechAE fields {missing}")
  shapes = speech_ae_shapes(config)
  params = torch_to_flax(read_safetensors(os.path.join(part, "model.safetensors")), shapes, what=part)
  params = jax.tree.map(lambda a, s: np.asarray(a, s.dtype), params, shapes)
  native.save_module(ckpt_part, "speech_ae", config, params)


def _export_a2v_dit(ckpt_part: str, out: str) -> None:
  config, _ = native.load_module(ckpt_part, "a2v_dit")
  _, params = native.load_module(ckpt_part, "a2v_dit", expected=param_shapes(build_model(config)))
  export_transformer(params, config, os.path.join(out, TRANSFORMER_DIR))
  _, audio = split_audio(params)
  tensors = flax_to_torch({"transformer_blocks": {AUDIO: audio}}, stacked=STACKED)
  audio_dir = os.path.join(out, AUDIO_DIR)
  os.makedirs(audio_dir, exist_ok=True)
  write_safetensors(os.path.join(audio_dir, AUDIO_WEIGHTS), tensors, metadata={"format": "pt"})
  write_json(os.path.join(audio_dir, "config.json"), {"_class_name": "A2VDiT", "read_jax_config": config})


def _import_a2v_dit(torch_dir: str, ckpt_part: str) -> None:
  ltx_dir, audio_dir = os.path.join(torch_dir, TRANSFORMER_DIR), os.path.join(torch_dir, AUDIO_DIR)
  for d in (ltx_dir, audio_dir):
    if not os.path.isfile(os.path.join(d, "config.json")):
      raise CheckpointError(f"{d}: no config.json ({TRANSFORMER_DIR}/ and {AUDIO_DIR}/ come together)")
  with open(os.path.join(audio_dir, "config.json")) as fh:
    config = json.load(fh).get("read_jax_config")
  if not isinstance(config, dict):
    raise CheckpointError(f"{audio_dir}/config.json: no 'read_jax_config' object")
  model = build_model(config)
  with open(os.path.join(ltx_dir, "config.json")) as fh:
    theirs = json.load(fh)
  want = diffusers_config(model)
  differ = [f"{k}: {theirs.get(k)!r} vs {v!r}" for k, v in want.items() if k != "_class_name" and theirs.get(k) != v]
  if differ:
    raise CheckpointError(f"{ltx_dir}/config.json does not match {audio_dir}/config.json: " + "; ".join(differ))
  state = read_safetensors(safetensors_files(ltx_dir, "diffusion_pytorch_model"))
  audio = read_safetensors(os.path.join(audio_dir, AUDIO_WEIGHTS))
  overlap = sorted(set(state) & set(audio))
  if overlap:
    raise CheckpointError(f"{audio_dir}: keys also in {ltx_dir}: {overlap[:5]}")
  shapes = param_shapes(model)
  params = torch_to_flax({**state, **audio}, shapes, stacked=STACKED, what=f"{ltx_dir} + {audio_dir}")
  params = jax.tree.map(lambda a, s: np.asarray(a, s.dtype), params, shapes)
  native.save_module(ckpt_part, "a2v_dit", config, params)


def _copy_vae(src: str, dst: str) -> None:
  """Load (every key checked) and write back in diffusers layout: the same tensors, as diffusers names them."""
  module, variables = load_vae(src)
  export_vae(module, jax.tree.map(np.asarray, variables), dst)


def _copy_whisper(src: str, dst: str) -> None:
  encoder, params = load_whisper_encoder(src)
  export_whisper_encoder(encoder, jax.tree.map(np.asarray, params), dst)


# ----------------------------------------------------------------------------------------------
# Entry points


def export_torch(ckpt_dir: str, out_dir: str) -> list[str]:
  """Write every part of the read_jax checkpoint ``ckpt_dir`` in PyTorch layouts into ``out_dir``
  (module docstring); returns the parts written."""
  if not os.path.isdir(ckpt_dir):
    raise CheckpointError(f"--ckpt {ckpt_dir}: no such checkpoint directory")
  parts = _present(ckpt_dir)
  if not parts:
    raise CheckpointError(f"--ckpt {ckpt_dir}: not a read_jax checkpoint directory (none of {list(PARTS)})")
  src = lambda p: _part(ckpt_dir, p)  # noqa: E731
  # Everything is written into a temporary sibling first and moved into out_dir only once every part
  # converted, so a part that fails leaves an earlier export in out_dir as it was.
  tmp = f"{os.path.abspath(out_dir).rstrip(os.sep)}.tmp{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    os.makedirs(tmp)
    if "vae" in parts:
      _copy_vae(src("vae"), os.path.join(tmp, "vae"))
    if speech_encoders.PART in parts:
      kind = speech_encoders.kind_of(src(speech_encoders.PART))
      if kind not in TORCH_SPEECH_ENCODERS:
        raise CheckpointError(f"{src(speech_encoders.PART)}: a {kind!r} speech encoder has no PyTorch export")
      _copy_whisper(src(speech_encoders.PART), os.path.join(tmp, TORCH_SPEECH_ENCODERS[kind]))
    if "speech_ae" in parts:
      _export_speech_ae(src("speech_ae"), os.path.join(tmp, "speech_ae"))
    if "a2v_dit" in parts:
      _export_a2v_dit(src("a2v_dit"), tmp)
    for name in COPIED:
      if os.path.isfile(src(name)):
        shutil.copyfile(src(name), os.path.join(tmp, name))
    os.makedirs(out_dir, exist_ok=True)
    for name in sorted(os.listdir(tmp)):
      dest = os.path.join(out_dir, name)
      if os.path.isdir(dest) and not os.path.islink(dest):
        shutil.rmtree(dest)
      os.replace(os.path.join(tmp, name), dest)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return parts


def import_torch(torch_dir: str, ckpt_dir: str) -> list[str]:
  """The reverse of :func:`export_torch`: a PyTorch directory → a read_jax checkpoint directory."""
  if not os.path.isdir(torch_dir):
    raise CheckpointError(f"--torch {torch_dir}: no such directory")
  has = lambda p: os.path.isdir(os.path.join(torch_dir, p))  # noqa: E731
  written = []
  os.makedirs(ckpt_dir, exist_ok=True)
  if has("vae"):
    _copy_vae(os.path.join(torch_dir, "vae"), os.path.join(ckpt_dir, "vae"))
    written.append("vae")
  if has("whisper"):
    _copy_whisper(os.path.join(torch_dir, "whisper"), os.path.join(ckpt_dir, speech_encoders.PART))
    written.append(speech_encoders.PART)
  if has("speech_ae"):
    _import_speech_ae(os.path.join(torch_dir, "speech_ae"), os.path.join(ckpt_dir, "speech_ae"))
    written.append("speech_ae")
  if has(TRANSFORMER_DIR) or has(AUDIO_DIR):
    _import_a2v_dit(torch_dir, os.path.join(ckpt_dir, "a2v_dit"))
    written.append("a2v_dit")
  if not written:
    raise CheckpointError(f"--torch {torch_dir}: no vae/, whisper/, speech_ae/ or {TRANSFORMER_DIR}/ inside "
                          "(not an export-torch directory)")
  for name in COPIED:
    if os.path.isfile(os.path.join(torch_dir, name)):
      shutil.copyfile(os.path.join(torch_dir, name), os.path.join(ckpt_dir, name))
  return written
