"""Training stages: what the generic loop (``loop.py``) needs to know about one model and its loss.

A stage is chosen by name, ``config.stage``, through :data:`STAGES`. Stage 1 is the SpeechAE;
stage 2 (the A2V-DiT with the SpeechAE fine-tuned jointly) plugs in by adding a class here, without
touching the loop.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import grain
import jax
import jax.numpy as jnp

from read_jax.data import records

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class Stage(Protocol):

  def batch_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of one global batch (``config.data.batch_size`` rows)."""

  def init(self, key: jax.Array, batch_spec: dict[str, jax.ShapeDtypeStruct]) -> Any:
    """Initial params (may be boxed ``nn.Partitioned``); run under ``jax.eval_shape`` and ``jax.jit``."""

  def loss_fn(self, params, batch: dict[str, jax.Array], key: jax.Array) -> tuple[jax.Array, dict]:
    """``(scalar float32 loss, {name: scalar metric})``, averaged over the batch."""

  def trainable(self, params) -> Any | None:
    """Bool pytree like ``params`` (False = frozen), or None when everything trains."""

  def datasets(self, process_index: int, process_count: int) -> tuple[grain.MapDataset, grain.MapDataset]:
    """``(train, val)`` batched MapDatasets of this process's rows (see ``read_jax.data.records``)."""

  # Optional: ``adapt_init_params(params) -> params``, applied once to the params read from
  # ``config.init_checkpoint`` (the VAE stage inflates a single-frame run for video with it).


def _speech_ae_module():
  # Imported lazily: the model file is written alongside this one, and tests may substitute it.
  from read_jax.models import speech_ae
  return speech_ae.SpeechAE, speech_ae.speech_ae_loss


def train_val_datasets(data_config, transform, process_index: int, process_count: int):
  """``(train, val)`` batched datasets of ``data_config.train_glob`` / ``val_glob`` for one process."""
  d = data_config
  if d.batch_size % process_count:
    raise ValueError(f"config.data.batch_size={d.batch_size} is not divisible by {process_count} processes")
  out = []
  for glob, train in ((d.train_glob, True), (d.val_glob, False)):
    source = records.read_source(records.expand_paths(glob, f"config.data.{'train' if train else 'val'}_glob"))
    out.append(records.pipeline(source, batch_size=d.batch_size // process_count,
                                seed=d.shuffle_seed if train else d.val_seed, train=train, transform=transform,
                                process_index=process_index, process_count=process_count))
  return tuple(out)


class SpeechAEStage:
  """Stage 1: SpeechAE reconstruction of Whisper features, loss α·MSE + β·L_CON (paper Eq. 7–9)."""

  def __init__(self, config):
    self.config = config
    model_cls, self._loss = _speech_ae_module()
    self.model = model_cls(**config.model, dtype=DTYPES[config.dtype], param_dtype=DTYPES[config.param_dtype])

  def batch_spec(self):
    m, d = self.config.model, self.config.data
    return {"speech": jax.ShapeDtypeStruct((d.batch_size, d.num_frames, m.window, m.feature_dim), jnp.float32)}

  def init(self, key, batch_spec):
    s = batch_spec["speech"]
    return self.model.init(key, jnp.zeros((1,) + s.shape[1:], s.dtype))["params"]

  def loss_fn(self, params, batch, key):
    del key  # deterministic model: no dropout or noise in stage 1
    s = batch["speech"]  # [B, F, 10, 384]
    _, s_hat = self.model.apply({"params": params}, s)
    l = self.config.loss
    loss, metrics = self._loss(s, s_hat.astype(jnp.float32), alpha=l.alpha, beta=l.beta, temperature=l.temperature)
    return loss, metrics

  def trainable(self, params):
    return None

  def datasets(self, process_index, process_count):
    d = self.config.data
    return train_val_datasets(d, records.random_crop("speech", d.num_frames), process_index, process_count)


def _a2v_dit_stage(config):
  # Imported on use: stage 2 pulls in the DiT and the noise scheduler, which stage 1 does not need.
  from read_jax.train.a2v_stage import A2VStage
  return A2VStage(config)


def _vae_stage(config):
  from read_jax.train.vae_stage import VAEStage
  return VAEStage(config)


# config.stage → stage constructor; each takes the whole (locked) config.
STAGES: dict[str, Callable[[Any], Stage]] = {
    "speechae": SpeechAEStage,
    "a2v_dit": _a2v_dit_stage,  # stage 2 (read_jax/train/a2v_stage.py)
    "vae": _vae_stage,  # a VAE from scratch, for the demo model (read_jax/train/vae_stage.py)
}


def make_stage(config) -> Stage:
  if config.stage not in STAGES:
    raise ValueError(f"config.stage={config.stage!r} is not one of {sorted(STAGES)}")
  return STAGES[config.stage](config)
