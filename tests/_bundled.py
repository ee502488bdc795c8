"""The bundled students (assets/demo_2step, assets/demo_live): what every one of them must be."""

import json
import os

import pytest

from read_jax.convert import checkpoint_dir
from read_jax.pipeline import PipelineConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bundled_student(name: str, own: tuple[str, ...] = ()) -> tuple[PipelineConfig, dict]:
  """assets/<name> checked as a bundled student (complete; its A2V-DiT and the parts in ``own`` its own, the other
  parts of VAE, speech encoder and SpeechAE links to assets/demo's): its pipeline settings and its A2V-DiT config.
  Skips when not checked out."""
  student = os.path.join(ROOT, "assets", name)
  if not os.path.isdir(student):
    pytest.skip(f"assets/{name} (a bundled student) is not in this checkout")
  checkpoint_dir.check_complete(student)
  for part in ("vae", "speech_encoder", "speech_ae"):
    shared = os.path.samefile(os.path.join(student, part), os.path.join(ROOT, "assets", "demo", part))
    assert shared == (part not in own), part
  with open(os.path.join(student, "pipeline.json")) as f:
    settings = PipelineConfig.from_dict(json.load(f))
  with open(os.path.join(student, "a2v_dit", "config.json")) as f:
    return settings, json.load(f)["config"]
