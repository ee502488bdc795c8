"""The train state: everything a checkpoint must hold to continue bit-exactly (besides the data iterator)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  step: jax.Array              # batches consumed (= train_step calls), int32 scalar
  params: Any                  # model params, unboxed, sharded per sharding.tree_shardings
  opt_state: Any               # optax state; skipped (non-finite) steps leave it untouched
  nonfinite_in_row: jax.Array  # consecutive steps whose loss or gradient was not finite; 0 after a good step
  nonfinite_total: jax.Array   # all skipped steps; step - nonfinite_total = optimizer updates applied

  @classmethod
  def create(cls, params, tx) -> "TrainState":
    zero = jnp.zeros((), jnp.int32)
    return cls(step=zero, params=params, opt_state=tx.init(params), nonfinite_in_row=zero,
               nonfinite_total=zero)


def strip_boxes(tree):
  """Logical-axis boxes → their values, with no sharding constraint (for abstract, untraced trees)."""
  is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)  # noqa: E731
  return jax.tree.map(lambda x: x.value if is_box(x) else x, tree, is_leaf=is_box)
