"""Checkpoints: one orbax ``CheckpointManager`` saving the train state and the grain iterator together.

Layout: ``{workdir}/checkpoints/{step}/{state,data}``. Saves are asynchronous (the step loop goes on
while arrays are written), keep the newest ``config.train.keep_checkpoints``, and are atomic: orbax
writes into a temporary directory and renames it when complete, so a run killed mid-save leaves
the previous checkpoint as the latest.

Where a run starts from (written once, here; MaxText's order):
  1. the latest checkpoint in this workdir: state and data iterator, bit-exact continuation;
  2. else ``config.init_checkpoint``: params only (optimizer and data start fresh), from another
     run's workdir or from a read_jax checkpoint directory (converted pretrained weights:
     ``scripts/convert.py import-ltx / import-whisper``, a stage-1 SpeechAE);
  3. else the stage's own initial params (scratch).
"""

from __future__ import annotations

import json
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from read_jax.convert import checkpoint_dir
from read_jax.errors import CheckpointError


class Checkpointer:

  def __init__(self, workdir: str, keep: int, async_save: bool = True):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                             create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_iter: grain.DatasetIterator) -> None:
    """Start saving ``state`` and the iterator position at ``step``; returns before arrays are written."""
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    data=grain.checkpoint.CheckpointSave(_Position(data_iter))),
                      force=True)

  def restore(self, step: int, abstract_state, data_iter: grain.DatasetIterator):
    """State restored onto ``abstract_state``'s shardings; ``data_iter`` repositioned in place."""
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=grain.checkpoint.CheckpointRestore(data_iter)))
    return out.state

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


class _Position:
  """The iterator's position taken now, for grain's handler, which may run in orbax's save thread
  while the loop has already moved the iterator on."""

  def __init__(self, data_iter: grain.DatasetIterator):
    self._state = json.dumps(data_iter.get_state(), indent=4).encode()

  def get_state(self) -> bytes:  # grain writes non-DatasetIterator states as ``get_state().decode()``
    return self._state


def restore_params(path: str, abstract_params, stage: str | None = None) -> Any:
  """Params to start from: ``path`` is another run's workdir, its ``checkpoints/`` or one step dir, or
  a read_jax checkpoint directory (converted pretrained weights: scripts/convert.py import-ltx ...),
  from which ``stage``'s params are taken."""
  path = os.path.abspath(os.path.expanduser(path))
  if checkpoint_dir.is_checkpoint_dir(path):
    tree = checkpoint_dir.stage_params(path, stage, abstract_params)
    return jax.tree.map(lambda a, s: jax.device_put(a, s.sharding), tree, abstract_params)
  candidates = [path, os.path.join(path, "checkpoints")]
  step_dir = None
  if os.path.isdir(os.path.join(path, "state")):
    step_dir = path
  else:
    for c in candidates:
      if os.path.isdir(c):
        steps = [int(d) for d in os.listdir(c) if d.isdigit() and os.path.isdir(os.path.join(c, d, "state"))]
        if steps:
          step_dir = os.path.join(c, str(max(steps)))
          break
  if step_dir is None:
    raise CheckpointError(f"config.init_checkpoint={path!r}: no checkpoint found (expected a step "
                            "directory holding state/, or a workdir / checkpoints dir containing some)")
  target = {"params": abstract_params}
  with ocp.PyTreeCheckpointer() as ckptr:
    out = ckptr.restore(os.path.join(step_dir, "state"), args=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))
  return out["params"]
