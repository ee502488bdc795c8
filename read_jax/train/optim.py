"""Optimizer: AdamW with linear warmup + cosine decay and global-norm clipping.

Gradient accumulation is *not* done here (no ``optax.MultiSteps``): the train step scans over
``config.train.accum_steps`` micro-batches and averages their gradients before one optimizer
update, so one train step = one batch of ``config.data.batch_size`` examples = one update, and the
step counter, the schedule and the checkpoints all count the same thing.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax


def lr_schedule(train_config) -> optax.Schedule:
  """0 → ``lr`` linearly over ``warmup_steps``, then cosine to ``lr * end_lr_fraction`` at ``steps``."""
  c = train_config
  if c.warmup_steps >= c.steps:
    raise ValueError(f"config.train.warmup_steps={c.warmup_steps} must be < config.train.steps={c.steps}")
  return optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=c.lr, warmup_steps=c.warmup_steps,
                                            decay_steps=c.steps, end_value=c.lr * c.end_lr_fraction)


def _decay_mask(params):
  # Weight decay on matrices and kernels only; biases, norm scales and other vectors are not decayed.
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(train_config, trainable: Callable[[Any], Any] | None = None
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """``(tx, schedule)``. ``trainable(params) -> bool pytree | None``: False leaves get zero updates
  (frozen); None (or no ``trainable``) trains everything."""
  c = train_config
  schedule = lr_schedule(c)
  tx = optax.chain(
      optax.clip_by_global_norm(c.grad_clip) if c.grad_clip > 0 else optax.identity(),
      optax.adamw(schedule, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay, mask=_decay_mask),
  )
  if trainable is not None:
    def labels(params):
      mask = trainable(params)
      if mask is None:
        return jax.tree.map(lambda _: "train", params)
      return jax.tree.map(lambda t: "train" if t else "freeze", mask)
    tx = optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)
  return tx, schedule
