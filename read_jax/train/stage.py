"""What the generic loop (``loop.py``) needs to know about one model and its loss: the :class:`Stage`.

Each stage is one module (``speech_ae_stage.py``, ``a2v_stage.py``, ``vae_stage.py``) registered by name in
``stages.py``; this module holds what they share.
"""

from __future__ import annotations

from typing import Any, Protocol

import grain
import jax
import numpy as np

from read_jax.data import records
from read_jax.errors import ConfigError


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
  # ``config.init_checkpoint`` (the VAE stage inflates a single-frame run for video with it);
  # ``init_from_checkpoint(path, fresh_params) -> params``, used instead of the generic restore of
  # ``config.init_checkpoint`` (the distillation reads its teacher with it), given the abstract params (their
  # shapes, dtypes and shardings), or freshly initialised ones when ``init_uses_fresh_params`` is True (a stage
  # that keeps some initialised values); ``needs_init_checkpoint``, a
  # message: the loop refuses a fresh run without ``config.init_checkpoint``.


def as_float32(example, rng):
  """A record's arrays as float32 (the clips are stored as float16): the stage-2 and distillation transform."""
  del rng
  return {k: np.asarray(v, np.float32) for k, v in example.items()}


def train_val_datasets(data_config, transform, process_index: int, process_count: int):
  """``(train, val)`` batched datasets of ``data_config.train_glob`` / ``val_glob`` for one process."""
  d = data_config
  if d.batch_size % process_count:
    raise ConfigError(f"config.data.batch_size={d.batch_size} is not divisible by {process_count} processes")
  out = []
  for glob, train in ((d.train_glob, True), (d.val_glob, False)):
    source = records.read_source(records.expand_paths(glob, f"config.data.{'train' if train else 'val'}_glob"))
    out.append(records.pipeline(source, batch_size=d.batch_size // process_count,
                                seed=d.shuffle_seed if train else d.val_seed, train=train, transform=transform,
                                process_index=process_index, process_count=process_count))
  return tuple(out)
