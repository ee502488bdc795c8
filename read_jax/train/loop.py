"""The generic training loop, shared by every stage (``stages.py``): ``train(config, workdir)``.

The state is born sharded (``eval_shape`` → shardings → ``jit(init, out_shardings=…)``), one
jitted pure ``train_step(state, batch, key) -> (state, metrics)`` with donated state does one
optimizer update per call, and the host loop around it only feeds batches, logs, evaluates and
checkpoints. The host reads device values only at logging steps (every ``config.train.log_every``),
so the non-finite halt is checked there too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import threading
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from jax.sharding import NamedSharding, PartitionSpec as P

from read_jax import sharding
from read_jax.data import records
from read_jax.errors import CheckpointError, ConfigError, DataError, InputError
from read_jax.files import atomic_path
from read_jax.train import checkpoint as ckpt_lib
from read_jax.train import optim
from read_jax.train.stage import Stage
from read_jax.train.stages import make_stage
from read_jax.train.state import TrainState, strip_boxes

# What writes each stage's training data, named when config.data's globs match nothing.
DATA_SOURCES = {
    "speechae": "the speech-feature shards come from scripts/extract_speech.py AUDIO... --whisper WHISPER_DIR "
                "--out DIR",
    "a2v_dit": "the clip shards come from scripts/preprocess.py VIDEOS... --ckpt CKPT_DIR --out DIR",
    "vae": "the frame shards come from read_jax.data.preprocess.write_frame_shards (scripts/train_demo.py)",
}


class NonFiniteLossError(RuntimeError):
  """Raised when the loss or gradient has been non-finite for ``max_nonfinite_in_row`` steps running."""


def _split_micro(x: jax.Array, accum_steps: int) -> jax.Array:
  """[B, ...] → [A, B/A, ...] with micro-batch i = rows i, i+A, i+2A, …

  Rows are interleaved (not contiguous blocks) so every micro-batch keeps an even share of each
  device's rows: the batch sharding carries over to the second axis without any data movement.
  """
  b = x.shape[0]
  return jnp.swapaxes(x.reshape((b // accum_steps, accum_steps) + x.shape[1:]), 0, 1)


def train_step(state: TrainState, batch: dict[str, jax.Array], base_key: jax.Array, *, stage: Stage,
               tx: optax.GradientTransformation, schedule: optax.Schedule, accum_steps: int
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update from one global batch, averaged over ``accum_steps`` micro-batches.

  A non-finite loss or gradient norm skips the update (params and optimizer state are kept by
  ``jnp.where``, no host round trip) and is counted; ``step`` advances either way, since the batch
  was consumed.
  """
  key = jax.random.fold_in(base_key, state.step)
  grad_fn = jax.value_and_grad(stage.loss_fn, has_aux=True)

  if accum_steps == 1:
    (loss, aux), grads = grad_fn(state.params, batch, key)
  else:
    micro = {k: jax.lax.with_sharding_constraint(_split_micro(v, accum_steps), P(None, sharding.BATCH_AXES))
             for k, v in batch.items()}

    def body(carry, inputs):
      i, mb = inputs
      (l, a), g = grad_fn(state.params, mb, jax.random.fold_in(key, i))
      return jax.tree.map(jnp.add, carry, (l, a, g)), None

    first = jax.tree.map(lambda v: v[0], micro)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         jax.eval_shape(lambda: grad_fn(state.params, first, key)))
    (loss, aux), grads = zeros
    (loss, aux, grads), _ = jax.lax.scan(body, (loss, aux, grads), (jnp.arange(accum_steps), micro))
    loss, aux, grads = jax.tree.map(lambda x: x / accum_steps, (loss, aux, grads))

  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  keep_if_bad = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
  bad = (~finite).astype(jnp.int32)
  new_state = state.replace(
      step=state.step + 1,
      params=keep_if_bad(params, state.params),
      opt_state=keep_if_bad(opt_state, state.opt_state),
      nonfinite_in_row=(state.nonfinite_in_row + 1) * bad,
      nonfinite_total=state.nonfinite_total + bad)
  metrics = {
      **aux, "loss": loss, "grad_norm": grad_norm,
      "param_norm": optax.tree.norm(new_state.params),
      "update_norm": jnp.where(finite, optax.tree.norm(updates), 0.0),
      # Updates applied so far = the optimizer's own count, which skipped steps do not advance.
      "lr": schedule(state.step - state.nonfinite_total),
      "nonfinite": bad, "nonfinite_in_row": new_state.nonfinite_in_row,
  }
  return new_state, metrics


def eval_step(params, batch, key, *, stage: Stage) -> dict[str, jax.Array]:
  loss, aux = stage.loss_fn(params, batch, key)
  return {**aux, "loss": loss}


class Trainer:
  """The jitted pieces of one stage on one mesh: ``init``, ``step`` and ``eval`` with explicit shardings."""

  def __init__(self, config, stage: Stage, mesh: jax.sharding.Mesh):
    self.config, self.stage, self.mesh = config, stage, mesh
    self.rules = sharding.logical_rules(config.sharding)
    d, t = config.data, config.train
    n_batch = mesh.shape["data"] * mesh.shape["fsdp"]
    if d.batch_size % (t.accum_steps * n_batch):
      raise ConfigError(f"config.data.batch_size={d.batch_size} must be divisible by config.train.accum_steps"
                        f"={t.accum_steps} × data×fsdp devices={n_batch}")
    self.batch_spec = stage.batch_spec()
    key = jax.random.key(0)
    with self.context():
      abstract_params = strip_boxes(jax.eval_shape(stage.init, key, self.batch_spec))
    # No freezing wrapper (and its extra per-leaf ops) when the stage trains everything.
    has_frozen = stage.trainable(abstract_params) is not None
    self.tx, self.schedule = optim.make_optimizer(t, stage.trainable if has_frozen else None)
    self.batch_shardings = sharding.batch_shardings(self.batch_spec, mesh)
    replicated = NamedSharding(mesh, P())

    def init_boxed(key):
      return TrainState.create(stage.init(key, self.batch_spec), self.tx)

    with self.context():
      boxed = jax.eval_shape(init_boxed, key)
    self.state_shardings = sharding.tree_shardings(boxed, mesh, self.rules, config.sharding.fallback)
    self.abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                       strip_boxes(boxed), self.state_shardings)
    self.init = jax.jit(lambda k: nn.unbox(init_boxed(k)), out_shardings=self.state_shardings)
    # The state around params read from elsewhere (config.init_checkpoint): no random init compiled or run.
    self.create = jax.jit(lambda params: TrainState.create(params, self.tx), in_shardings=(self.state_shardings.params,),
                          out_shardings=self.state_shardings)
    self.step = jax.jit(
        functools.partial(train_step, stage=stage, tx=self.tx, schedule=self.schedule, accum_steps=t.accum_steps),
        in_shardings=(self.state_shardings, self.batch_shardings, replicated),
        out_shardings=(self.state_shardings, replicated), donate_argnames="state")
    self.eval = jax.jit(functools.partial(eval_step, stage=stage),
                        in_shardings=(self.state_shardings.params, self.batch_shardings, replicated),
                        out_shardings=replicated)

  @contextlib.contextmanager
  def context(self):
    """Mesh and logical-axis rules for tracing (modules' ``nn.with_logical_constraint`` need both)."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      yield

  def shard(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    return sharding.shard_batch(batch, self.mesh)


class _Logger:
  """TensorBoard events + ``metrics.jsonl`` in the workdir, written by process 0 only."""

  def __init__(self, workdir: str, enabled: bool):
    self.enabled = enabled
    if enabled:
      import tensorboardX
      self.writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))
      self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def write(self, split: str, step: int, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    for k, v in metrics.items():
      self.writer.add_scalar(f"{split}/{k}", v, step)
    self.jsonl.write(json.dumps({"split": split, "step": step, **metrics}) + "\n")
    self.jsonl.flush()

  def close(self):
    if self.enabled:
      self.writer.close()
      self.jsonl.close()


def evaluate(trainer: Trainer, params, val_ds, key) -> dict[str, float]:
  """Mean metrics over the first ``config.data.val_batches`` validation batches (0 = all)."""
  n = len(val_ds) if trainer.config.data.val_batches <= 0 else min(len(val_ds), trainer.config.data.val_batches)
  if n == 0:
    raise DataError(f"config.data.val_glob={trainer.config.data.val_glob!r}: fewer than "
                    f"config.data.batch_size={trainer.config.data.batch_size} examples")
  total = None
  for i in range(n):
    m = trainer.eval(params, trainer.shard(val_ds[i]), key)
    total = m if total is None else jax.tree.map(jnp.add, total, m)
  return {k: float(v) / n for k, v in jax.device_get(total).items()}


def _to_float(metrics) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def _has_checkpoint(workdir: str) -> bool:
  directory = os.path.join(workdir, "checkpoints")  # orbax names a complete step directory by its number
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def check_inputs(config, workdir: str) -> None:
  """Refuse the user's mistakes that show before anything is built or written, so a bad command fails in
  a second and leaves the workdir as it was.

  Each is an :class:`~read_jax.errors.InputError` naming the option: a workdir that is a file, data globs
  that match nothing (saying what writes that data), a ``config.init_checkpoint`` that does not exist when
  it would be used (the workdir has no checkpoint of its own).
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise InputError(f"--workdir {workdir}: exists and is not a directory")
  d = config.data
  for key in ("train_glob", "val_glob"):
    if key in d:
      source = DATA_SOURCES.get(config.stage)
      hint = f"{source}; then --config.data.{key}='DIR/{key[:-5]}-*.array_record'" if source else ""
      records.expand_paths(d[key], f"config.data.{key}", hint=hint)
  if config.init_checkpoint and not _has_checkpoint(workdir):
    if not os.path.exists(os.path.expanduser(config.init_checkpoint)):
      raise CheckpointError(f"config.init_checkpoint={config.init_checkpoint}: no such file or directory")


def train(config, workdir: str, *, devices=None) -> dict[str, Any]:
  """Train ``config.stage`` into ``workdir`` (resuming from it if it holds checkpoints).

  Returns ``{"step": last step, "state": final TrainState, "train": [(step, metrics)], "val": [(step,
  metrics)]}`` of this run (train metrics at logging steps only). On SIGTERM (preemption): finish the
  current step, checkpoint, return normally, so the script exits 0 and a rerun resumes.
  """
  check_inputs(config, workdir)
  t, d = config.train, config.data
  stage = make_stage(config)
  needs = getattr(stage, "needs_init_checkpoint", None)  # optional Stage attribute: why it needs one
  if needs and not config.init_checkpoint and not _has_checkpoint(workdir):
    raise ConfigError(f"{needs}; none given (--config.init_checkpoint=DIR)")
  train_ds, val_ds = stage.datasets(jax.process_index(), jax.process_count())
  mesh = sharding.make_mesh(config.mesh, devices)
  trainer = Trainer(config, stage, mesh)
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  if is_main:
    with atomic_path(os.path.join(workdir, "config.json")) as tmp, open(tmp, "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  data_iter = records.make_iterator(train_ds, d.workers)
  ckpt = ckpt_lib.Checkpointer(workdir, keep=t.keep_checkpoints)
  init_key, train_key = jax.random.split(jax.random.key(config.seed))
  eval_key = jax.random.key(0)

  def say(msg):  # above the progress bar, once (process 0)
    if is_main:
      tqdm.tqdm.write(msg)

  with trainer.context():
    # Resume order (checkpoint.py): this workdir's latest → config.init_checkpoint → stage init.
    start = ckpt.latest_step()
    if start is not None:
      state = ckpt.restore(start, trainer.abstract_state, data_iter)
      say(f"resuming from step {start} ({ckpt.directory})")
    else:
      start = 0
      if not config.init_checkpoint:
        state = trainer.init(init_key)
      else:
        # The params come from the checkpoint; a random init is made only for a stage that takes some of its
        # values (the distillation's new guidance embedding), else the template is abstract.
        abstract = trainer.abstract_state.params
        fresh = trainer.init(init_key).params if getattr(stage, "init_uses_fresh_params", False) else abstract
        load = getattr(stage, "init_from_checkpoint", None)  # optional Stage method (the distillation's teacher)
        if load is not None:
          params = load(config.init_checkpoint, fresh)
        else:
          params = ckpt_lib.restore_params(config.init_checkpoint, abstract, config.stage)
        adapt = getattr(stage, "adapt_init_params", None)  # optional Stage method
        if adapt is not None:
          params = adapt(params)
        state = trainer.create(jax.tree.map(lambda new, like: jax.device_put(new, like.sharding), params, abstract))
        say(f"params from config.init_checkpoint={config.init_checkpoint}")

    stop = {"signal": None}
    def on_sigterm(signum, frame):
      del frame
      stop["signal"] = signum
    # Signal handlers can only be installed from the main thread (not, e.g., under a thread pool).
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main else None

    logger = _Logger(workdir, is_main)
    history = {"train": [], "val": []}
    bar = tqdm.tqdm(total=t.steps, initial=start, disable=not is_main or not t.progress_bar,
                    dynamic_ncols=True, desc=config.stage)
    last_time, last_step = time.perf_counter(), start
    step = start
    try:
      if t.eval_every and step == 0:  # the untrained baseline, so curves start at step 0
        m = evaluate(trainer, state.params, val_ds, eval_key)
        logger.write("val", 0, m)
        history["val"].append((0, m))
      while step < t.steps:
        batch = trainer.shard(next(data_iter))
        state, metrics = trainer.step(state, batch, train_key)
        step += 1
        bar.update(1)
        if step % t.log_every == 0 or step == t.steps:
          m = _to_float(metrics)
          now = time.perf_counter()
          m["steps_per_s"] = (step - last_step) / max(now - last_time, 1e-9)
          last_time, last_step = now, step
          logger.write("train", step, m)
          history["train"].append((step, m))
          bar.set_postfix(loss=f"{m['loss']:.4g}", steps_per_s=f"{m['steps_per_s']:.2f}")
          if m["nonfinite_in_row"] >= t.max_nonfinite_in_row:
            raise NonFiniteLossError(
                f"stopping at step {step}: the loss or gradient was non-finite for {int(m['nonfinite_in_row'])} "
                f"steps in a row (config.train.max_nonfinite_in_row={t.max_nonfinite_in_row}; "
                f"{int(jax.device_get(state.nonfinite_total))} skipped in all). Latest checkpoint: step "
                f"{ckpt.latest_step()} in {ckpt.directory}. Lower config.train.lr or check the data.")
        if t.eval_every and (step % t.eval_every == 0 or step == t.steps):
          m = evaluate(trainer, state.params, val_ds, eval_key)
          logger.write("val", step, m)
          history["val"].append((step, m))
          say(f"step {step}: val loss {m['loss']:.5g}")
        if step % t.ckpt_every == 0 or step == t.steps or stop["signal"] is not None:
          ckpt.save(step, state, data_iter)
          if t.pause_after_checkpoint_s > 0:
            ckpt.wait()
            until = time.monotonic() + t.pause_after_checkpoint_s
            while time.monotonic() < until and stop["signal"] is None:
              time.sleep(0.05)
        if stop["signal"] is not None:
          say(f"signal {stop['signal']} received: checkpoint saved at step {step}, exiting")
          break
    finally:
      ckpt.wait()
      ckpt.close()
      bar.close()
      logger.close()
      if previous is not None:
        signal.signal(signal.SIGTERM, previous)
  history["step"] = step
  history["state"] = state
  return history
