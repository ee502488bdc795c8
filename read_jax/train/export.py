"""A training run's trained parts → a read_jax checkpoint directory (``scripts/convert.py import-run``).

  run_params(run_dir)             (stage, params) of a run's latest checkpoint, rebuilt from its config.json
  import_run(run_dir, out_dir)    the parts the run trains: vae/ (stage "vae", with latent statistics),
                                  speech_ae/ (stage 1, latents standardised on ``speech_glob``),
                                  a2v_dit/ + speech_ae/ (stage 2), a2v_dit/ + pipeline.json (a distilled
                                  student, into a copy of its teacher's directory)
"""

from __future__ import annotations

import glob
import os

import jax
import ml_collections
import numpy as np

from read_jax.convert import checkpoint_dir, native
from read_jax.convert.vae import export_vae, load_vae
from read_jax.data import records
from read_jax.files import CheckpointError, read_json, write_json
from read_jax.models import a2v_dit, speech_ae
from read_jax.constants import FRAMES_PER_LATENT
from read_jax.models.vae import unit_latent_stats
from read_jax.train import checkpoint as ckpt_lib
from read_jax.train.stages import make_stage
from read_jax.train.state import strip_boxes
from read_jax.train.vae_stage import is_vae_weights


def run_params(run_dir: str):
  """``(stage, params)`` of a training run's latest checkpoint, rebuilt from the run's ``config.json``."""
  config_path = os.path.join(run_dir, "config.json")
  if not os.path.isfile(config_path):
    raise CheckpointError(f"--run {run_dir}: no config.json (not a scripts/train.py workdir)")
  config = ml_collections.ConfigDict(read_json(config_path))
  stage = make_stage(config)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.eval_shape(stage.init, jax.random.key(0), stage.batch_spec())
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), strip_boxes(abstract))
  params = ckpt_lib.restore_params(os.path.join(run_dir, "checkpoints"), abstract)
  return stage, jax.tree.map(np.asarray, params)


def import_run(run_dir: str, out_dir: str, *, vae_stats: dict | None = None,
               speech_glob: str | None = None) -> list[str]:
  """Write the parts a training run trained into ``out_dir``; returns the parts written.

  Stage "vae" → vae/ (``vae_stats``: ``latents_mean`` / ``latents_std`` from
  ``read_jax.train.vae_stage.latent_stats``; without them a run with a frozen encoder keeps its init VAE's
  statistics, since its latents are that VAE's, and any other run leaves the latents unnormalised),
  "speechae" → speech_ae/, "a2v_dit" → a2v_dit/ and speech_ae/ (fine-tuned jointly).
  ``speech_glob`` (stage "speechae" only): speech records (scripts/extract_speech.py) on which to
  standardise the SpeechAE's latents before stage 2 (``read_jax.models.speech_ae.standardize_latents``).
  """
  stage, params = run_params(run_dir)
  name = stage.config.stage
  os.makedirs(out_dir, exist_ok=True)
  if name == "vae":
    buffers = vae_stats or init_vae_stats(stage.config) or unit_latent_stats(stage.model.config.latent_channels)
    export_vae(stage.model, {"params": params, "buffers": buffers}, os.path.join(out_dir, "vae"))
    return ["vae"]
  if speech_glob and name != "speechae":
    raise CheckpointError(f"--run {run_dir}: --speech standardises a stage-1 (speechae) run's latents, not {name!r}")
  if name == "speechae":
    if speech_glob:
      params = standardized_speech_ae(stage.model, params, speech_glob)
    parts = {"speech_ae": (stage.model, params)}
  elif name == "a2v_dit":
    parts = {"a2v_dit": (stage.dit, params["dit"]), "speech_ae": (stage.speech_ae, params["speech_ae"])}
  elif name == "distill":
    written = checkpoint_dir.write_parts(out_dir, {"a2v_dit": (stage.student, params["student"])})
    set_pipeline_settings(out_dir, stage.pipeline_settings())
    return written
  else:
    raise CheckpointError(f"--run {run_dir}: stage {name!r} has no checkpoint-directory part")
  return checkpoint_dir.write_parts(out_dir, parts)


def init_vae_stats(config) -> dict | None:
  """The latent statistics of a VAE run's ``init_checkpoint`` when its encoder was frozen (the latents the
  diffusion model sees are then that VAE's), else None."""
  path = config.get("init_checkpoint")
  if not (config.get("freeze_encoder") and path and is_vae_weights(path)):
    return None
  buffers = load_vae(path)[1]["buffers"]
  return {k: np.asarray(v) for k, v in buffers.items()}


def one_pass_student(teacher_dir: str, out_dir: str, *, seed: int = 0) -> None:
  """Turn ``out_dir`` (a copy of ``teacher_dir``) into the one-pass student of a teacher that samples with one
  branch (cfg "none"): the teacher's A2V-DiT plus a fresh guidance embedding, whose last layer is zero, so it
  computes exactly what the teacher samples with; ``pipeline.json``: cfg "distilled" at (α, β) = (0, 1), which
  is Eq. 17's full branch. A guidance round would have nothing to learn (docs/distillation.md)."""
  config, params = native.load_module(os.path.join(teacher_dir, "a2v_dit"), "a2v_dit")
  student = a2v_dit.build_model({**config, "guidance_embeds": True})
  fresh = jax.tree.map(np.asarray, a2v_dit.init_params(student, jax.random.key(seed)))
  checkpoint_dir.write_parts(out_dir, {"a2v_dit": (student, {**params, "guidance_embedder": fresh["guidance_embedder"]})})
  set_pipeline_settings(out_dir, {"cfg": "distilled", "alpha": 0.0, "beta": 1.0, "distilled_steps": []})


def set_pipeline_settings(out_dir: str, settings: dict) -> None:
  """Update ``out_dir``'s pipeline.json with ``settings`` (a distilled student's sampling: one pass, its steps);
  the other settings stay as they are (the teacher's, when ``out_dir`` started as its copy)."""
  path = os.path.join(out_dir, "pipeline.json")  # read_jax.pipeline.PIPELINE_CONFIG (a layer above; it checks the keys)
  current = read_json(path) if os.path.isfile(path) else {}
  write_json(path, {**current, **settings})


def standardized_speech_ae(model, params, speech_glob: str, window_latents: int = 33):
  """SpeechAE params with unit latents over the records of ``speech_glob``: each record cut into windows
  of 1 + 8·32 frames and a last one of its remaining 1 + 8k, k ≥ 1 (so few shapes compile, whatever the
  lengths); a record shorter than 9 frames counts with its first frame."""
  paths = sorted(glob.glob(speech_glob))
  if not paths:
    raise CheckpointError(f"--speech {speech_glob}: no file matches")
  source = records.read_source(paths)
  k = FRAMES_PER_LATENT

  def clips():
    for i in range(len(source)):
      s = source[i]["speech"]
      first = True
      while s.shape[0] >= (1 if first else 1 + k):
        n = 1 + min(window_latents - 1, (s.shape[0] - 1) // k) * k
        yield s[:n]
        s, first = s[n:], False

  stats = speech_ae.latent_stats(model, params, clips())
  return jax.tree.map(np.asarray, speech_ae.standardize_latents(params, stats["mean"], stats["std"]))
