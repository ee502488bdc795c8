"""Building a read_jax checkpoint directory from pretrained weights, and reading it as training init.

  import_ltx(ltx_path, out_dir)        vae/ + a2v_dit/ from LTX-Video (diffusers pipeline directory or an
                                       original single .safetensors file); the audio attention is new, zero output
  import_whisper(whisper_dir, out_dir) speech_encoder/ from a transformers or CTranslate2 Whisper directory (the
                                       encoder only; the part is named by its role: read_jax.convert.speech_encoders)
  init_speech_ae(out_dir, config)      speech_ae/ randomly initialised — only on request (it has no pretrained
                                       source: stage 1 trains it)
  set_prompt(prompt_file, out_dir)     prompt.safetensors (from scripts/encode_prompt.py), width checked
  check_complete(ckpt_dir)             one error naming every missing part and the command that provides it
  stage_params(ckpt_dir, stage)        the param tree a training stage starts from (``config.init_checkpoint``)

A training run's parts are written by :func:`read_jax.train.export.import_run` with :func:`write_parts`.
Each function adds or replaces its own part and leaves the others alone, so the parts can come from
different sources; every write checks the part against the ones already there (SpeechAE latent width =
A2V-DiT audio width, SpeechAE feature width = Whisper width, prompt width = caption width).
Directory layout: :mod:`read_jax.pipeline`.
"""

from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.config import load_config
from read_jax.convert import native
from read_jax.convert.ltx_transformer import load_transformer
from read_jax.convert.vae import export_vae, load_vae
from read_jax.convert import speech_encoders
from read_jax.convert.whisper import export_whisper_encoder, load_whisper_encoder
from read_jax.files import CheckpointError, read_json, read_safetensors
from read_jax.models.speech_ae import SpeechAE

SPEECH_ENCODER = speech_encoders.PART  # "speech_encoder" (older checkpoints: "whisper")
PARTS = {  # part → how to provide it
  "vae": "scripts/convert.py import-ltx",
  "a2v_dit": "scripts/convert.py import-ltx",
  SPEECH_ENCODER: "scripts/convert.py import-whisper",
  "speech_ae": "a stage-1 training run, or scripts/convert.py import-ltx --init-speech-ae CONFIG (random)",
}
PROMPT_FILE = "prompt.safetensors"
STAGE_PARTS = {"speechae": ("speech_ae",), "a2v_dit": ("a2v_dit", "speech_ae")}


def is_checkpoint_dir(path: str) -> bool:
  """True for a read_jax checkpoint directory (it holds at least one of the parts)."""
  return os.path.isdir(path) and any(os.path.isdir(_part_path(path, p)) for p in PARTS)


def _part_path(ckpt_dir: str, part: str) -> str:
  return speech_encoders.part_path(ckpt_dir) if part == SPEECH_ENCODER else os.path.join(ckpt_dir, part)


def _model_config(config) -> dict | None:
  """A2V-DiT fields from a config name ("a2v_dit:tiny"), a ConfigDict/dict with or without ``model``, or None."""
  if config is None:
    return None
  if isinstance(config, str):
    config = load_config(config)
  if "model" in config:
    config = config["model"]
  return dict(config)


def _native_fields(module) -> dict:
  import dataclasses
  return {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
          if f.name not in ("parent", "name", "dtype", "param_dtype")}


def _part_config(ckpt_dir: str, part: str) -> dict | None:
  """A part's config (read_jax parts: checked by native.read_config; vae: its config.json; the speech encoder:
  its width), or None."""
  path = _part_path(ckpt_dir, part)
  if not os.path.isdir(path):
    return None
  if part == SPEECH_ENCODER:
    return {"width": speech_encoders.encoder_width(path)}
  if not os.path.isfile(os.path.join(path, "config.json")):
    return None
  if part in ("speech_ae", "a2v_dit"):
    return native.read_config(path, part)
  return read_json(os.path.join(path, "config.json"))


def check_consistent(ckpt_dir: str, **pending) -> None:
  """Widths that must agree between the parts present; ``pending``: part → config about to be written
  (checked before anything is written, so a refused part leaves the directory as it was)."""
  configs = {p: pending[p] if p in pending else _part_config(ckpt_dir, p)
             for p in ("speech_ae", "a2v_dit", SPEECH_ENCODER, "vae")}
  problems = native.fit_problems(configs)
  dit = configs["a2v_dit"]
  prompt = pending.get("prompt", os.path.join(ckpt_dir, PROMPT_FILE))
  if dit and os.path.isfile(prompt):
    width = read_safetensors(prompt)["prompt_embeds"].shape[-1]
    if width != dit["caption_channels"]:
      problems.append(f"{PROMPT_FILE} width {width} vs a2v_dit caption_channels {dit['caption_channels']}")
  if problems:
    raise CheckpointError(f"{ckpt_dir}: parts do not fit together: " + "; ".join(problems))


def _replace_dir(tmp: str, final: str) -> None:
  if os.path.isdir(final):
    shutil.rmtree(final)
  os.replace(tmp, final)


def import_ltx(ltx_path: str, out_dir: str, *, config=None, num_layers: int | None = None, seed: int = 0) -> None:
  """vae/ and a2v_dit/ of ``out_dir`` from LTX-Video weights.

  ltx_path: a diffusers LTX-Video pipeline directory (``transformer/`` and ``vae/`` inside) or an original
    single-file checkpoint (``ltx-video-2b-v0.9*.safetensors``, transformer and VAE in one file).
  config: the A2V-DiT architecture (e.g. "a2v_dit", "a2v_dit:tiny" or a ConfigDict); None: the checkpoint's,
    with read_jax's defaults for the audio fields. num_layers: keep the first N blocks (the paper: 24 of 28).
  seed: PRNG seed of the new audio cross-attention (its output projection is zero: the model computes LTX).
  """
  if os.path.isdir(ltx_path):
    transformer, vae = os.path.join(ltx_path, "transformer"), os.path.join(ltx_path, "vae")
    missing = [d for d in (transformer, vae) if not os.path.isdir(d)]
    if missing:
      raise CheckpointError(f"--ltx {ltx_path}: a diffusers LTX-Video directory needs transformer/ and vae/; "
                            f"missing {', '.join(os.path.basename(m) + '/' for m in missing)}")
  elif os.path.isfile(ltx_path) and ltx_path.endswith(".safetensors"):
    transformer = vae = ltx_path
  else:
    raise CheckpointError(f"--ltx {ltx_path}: expected a diffusers LTX-Video directory (transformer/, vae/) or an "
                          "original single .safetensors file")
  os.makedirs(out_dir, exist_ok=True)
  model, params = load_transformer(transformer, _model_config(config), num_layers, key=jax.random.key(seed))
  vae_module, vae_variables = load_vae(vae)
  fields = native.plain(_native_fields(model))
  check_consistent(out_dir, a2v_dit=fields, vae={"latent_channels": vae_module.config.latent_channels})
  tmp = os.path.join(out_dir, "a2v_dit.tmp")
  native.save_module(tmp, "a2v_dit", fields, params)
  _replace_dir(tmp, os.path.join(out_dir, "a2v_dit"))
  export_vae(vae_module, jax.tree.map(np.asarray, vae_variables), os.path.join(out_dir, "vae"))


def import_whisper(whisper_dir: str, out_dir: str, *, param_dtype=None, note: str = "") -> None:
  """speech_encoder/ of ``out_dir`` from a transformers or CTranslate2 Whisper directory (the encoder is kept;
  an older checkpoint's whisper/ is replaced). ``param_dtype``: store the weights in it (None: as they come);
  ``note``: a README.md beside them (where they came from, their licence)."""
  encoder, params = load_whisper_encoder(whisper_dir)
  check_consistent(out_dir, **{SPEECH_ENCODER: {"width": encoder.d_model}})
  os.makedirs(out_dir, exist_ok=True)
  tmp = os.path.join(out_dir, f"{SPEECH_ENCODER}.tmp")
  shutil.rmtree(tmp, ignore_errors=True)
  export_whisper_encoder(encoder, jax.tree.map(lambda a: np.asarray(a, param_dtype), params), tmp)
  if note:
    with open(os.path.join(tmp, "README.md"), "w") as fh:
      fh.write(note)
  _replace_dir(tmp, os.path.join(out_dir, SPEECH_ENCODER))
  for legacy in speech_encoders.LEGACY_PARTS:
    shutil.rmtree(os.path.join(out_dir, legacy), ignore_errors=True)


def init_speech_ae(out_dir: str, config="speechae", *, seed: int = 0) -> None:
  """speech_ae/ of ``out_dir`` randomly initialised from a SpeechAE config (only when the user asks)."""
  if isinstance(config, str):
    config = load_config(config)
  fields = dict(config["model"] if "model" in config else config)
  check_consistent(out_dir, speech_ae=fields)
  model = SpeechAE(**fields)
  s = jnp.zeros((1, 1, model.window, model.feature_dim), jnp.float32)
  params = jax.tree.map(np.asarray, jax.jit(model.init)(jax.random.key(seed), s)["params"])
  os.makedirs(out_dir, exist_ok=True)
  native.save_module(os.path.join(out_dir, "speech_ae"), "speech_ae", fields, params)


def write_parts(out_dir: str, parts: dict) -> list[str]:
  """Write ``{part: (module, params)}`` (parts "a2v_dit", "speech_ae") into ``out_dir``, each checked against
  the parts already there first, each replaced whole (a temporary directory renamed into place)."""
  fields = {part: native.plain(_native_fields(module)) for part, (module, _) in parts.items()}
  check_consistent(out_dir, **fields)
  os.makedirs(out_dir, exist_ok=True)
  for part, (_, tree) in parts.items():
    tmp = os.path.join(out_dir, f"{part}.tmp")
    native.save_module(tmp, part, fields[part], tree)
    _replace_dir(tmp, os.path.join(out_dir, part))
  return list(parts)


def set_prompt(prompt_file: str, out_dir: str) -> None:
  """Copy a prompt embedding file (``prompt_embeds`` [L, C], ``prompt_attention_mask`` [L]) into ``out_dir``."""
  if not os.path.isfile(prompt_file):
    raise CheckpointError(f"--prompt {prompt_file}: no such file")
  tensors = read_safetensors(prompt_file)
  if "prompt_embeds" not in tensors:
    raise CheckpointError(f"--prompt {prompt_file}: no 'prompt_embeds' tensor (has {sorted(tensors)})")
  check_consistent(out_dir, prompt=prompt_file)
  os.makedirs(out_dir, exist_ok=True)
  shutil.copyfile(prompt_file, os.path.join(out_dir, PROMPT_FILE))


def check_complete(ckpt_dir: str) -> None:
  """Raise one CheckpointError naming every part ``ReadPipeline.from_pretrained`` needs and does not find."""
  missing = [p for p in PARTS if not os.path.isdir(_part_path(ckpt_dir, p))]
  if missing:
    raise CheckpointError(f"{ckpt_dir}: missing " + "; ".join(f"{p}/ (from {PARTS[p]})" for p in missing))
  check_consistent(ckpt_dir)


def stage_params(ckpt_dir: str, stage_name: str, expected=None):
  """The param tree a training stage starts from, read from a read_jax checkpoint directory.

  stage "speechae": the SpeechAE params; stage "a2v_dit": ``{"dit": A2V-DiT params, "speech_ae": SpeechAE params}``.
  ``expected`` (the stage's params as arrays or ShapeDtypeStructs, e.g. ``jax.eval_shape(stage.init, ...)``)
  checks every key and shape and casts to its dtypes.
  """
  if stage_name not in STAGE_PARTS:
    raise ValueError(f"stage {stage_name!r}: a checkpoint directory initialises only {sorted(STAGE_PARTS)}")
  if not os.path.isdir(ckpt_dir):
    raise CheckpointError(f"init checkpoint {ckpt_dir}: no such directory")
  parts = STAGE_PARTS[stage_name]
  missing = [p for p in parts if not os.path.isdir(os.path.join(ckpt_dir, p))]
  if missing:
    raise CheckpointError(f"init checkpoint {ckpt_dir}: stage {stage_name!r} needs "
                          + ", ".join(f"{p}/ (from {PARTS[p]})" for p in missing))
  if stage_name == "speechae":
    tree = native.load_module(os.path.join(ckpt_dir, "speech_ae"), "speech_ae", expected)[1]
  else:
    sub = lambda k: None if expected is None else expected[k]  # noqa: E731
    tree = {"dit": native.load_module(os.path.join(ckpt_dir, "a2v_dit"), "a2v_dit", sub("dit"))[1],
            "speech_ae": native.load_module(os.path.join(ckpt_dir, "speech_ae"), "speech_ae", sub("speech_ae"))[1]}
  if expected is not None:
    tree = jax.tree.map(lambda a, s: np.asarray(a, s.dtype), tree, expected)
  return tree
