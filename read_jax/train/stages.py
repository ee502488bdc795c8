"""The registry of training stages: ``config.stage`` → the :class:`~read_jax.train.stage.Stage` that trains it.

A new stage is one module ``<name>_stage.py`` with a Stage class, one line here, and a ``configs/<name>.py``
with a ``:tiny`` variant; the loop is not touched.
"""

from __future__ import annotations

from typing import Any, Callable

from read_jax.errors import ConfigError
from read_jax.train.a2v_stage import A2VStage
from read_jax.train.distill_stage import DistillStage
from read_jax.train.speech_ae_stage import SpeechAEStage
from read_jax.train.stage import Stage
from read_jax.train.vae_stage import VAEStage

# config.stage → stage constructor; each takes the whole (locked) config.
STAGES: dict[str, Callable[[Any], Stage]] = {
    "speechae": SpeechAEStage,  # stage 1 (paper §3.2)
    "a2v_dit": A2VStage,  # stage 2 (paper §3.3): A2V-DiT + SpeechAE fine-tuned jointly
    "vae": VAEStage,  # a VAE from scratch, for the demo model
    "distill": DistillStage,  # few-step students of stage 2 (docs/distillation.md)
}


def make_stage(config) -> Stage:
  if config.stage not in STAGES:
    raise ConfigError(f"config.stage={config.stage!r} is not one of {sorted(STAGES)}")
  return STAGES[config.stage](config)
