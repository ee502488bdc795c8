"""Training: the generic loop (``loop.train``), its stages, optimizer, state and checkpoints."""

from read_jax.train.loop import NonFiniteLossError, Trainer, train, train_step
from read_jax.train.stage import Stage
from read_jax.train.stages import STAGES, make_stage
from read_jax.train.state import TrainState

__all__ = ["NonFiniteLossError", "STAGES", "Stage", "TrainState", "Trainer", "make_stage", "train", "train_step"]
