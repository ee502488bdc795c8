"""The generic training loop on the tiny SpeechAE: learning, exact resume after SIGKILL, SIGTERM,
non-finite steps, and 1 device vs 8 (data 2 × fsdp 4).

Every run uses the same config (so the same compiled programs), and a persistent compilation cache
shared with the subprocess, so XLA compiles each program once for the whole file.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest

from read_jax import sharding
from read_jax.config import load_config
from read_jax.errors import CheckpointError, ConfigError
from read_jax.train import NonFiniteLossError, Trainer, loop, make_stage, train
from read_jax.train import checkpoint as ckpt_lib

sys.path.insert(0, os.path.dirname(__file__))
import _train_data  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, HALF = 80, 40  # the tiny config's steps; resume point N = HALF, 2N = STEPS
# Every run below differs only in host-side keys (data paths, checkpoint cadence, test hooks), which
# do not change the compiled programs.
# Batch 16 on data 2 × fsdp 4 (the 8 fake devices of conftest.py): 2 rows per device.
COMMON = ["--config.mesh.data=2", "--config.mesh.fsdp=4", "--config.data.batch_size=16",
          "--config.train.log_every=1", f"--config.train.steps={STEPS}", f"--config.train.ckpt_every={HALF}"]


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  from jax._src import compilation_cache
  directory = str(tmp_path_factory.mktemp("jax_cache"))
  old = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  compilation_cache.reset_cache()
  yield directory
  jax.config.update("jax_compilation_cache_dir", old[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])
  compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  base = tmp_path_factory.mktemp("speech")
  tiny = load_config("speechae.py:tiny")
  train_glob, val_glob = _train_data.write_speech_shards(str(base / "good"), tiny)
  # One clip in 48 is NaN: one batch per epoch has a non-finite loss.
  rng = np.random.default_rng(1)
  proj = rng.normal(size=(4, tiny.model.feature_dim)).astype(np.float32) / 2
  clips = [_train_data.speech_like(rng, 40, tiny.model.window, tiny.model.feature_dim, proj) for _ in range(48)]
  clips[7][:] = np.nan
  from read_jax.data import records
  records.write_shards(({"speech": c} for c in clips), str(base / "some_nan" / "train"), 16)
  records.write_shards(({"speech": c * np.nan} for c in clips[:16]), str(base / "all_nan" / "train"), 16)
  return {"train": train_glob, "val": val_glob, "some_nan": str(base / "some_nan" / "train-*"),
          "all_nan": str(base / "all_nan" / "train-*")}


def _overrides(data, train_glob=None, extra=()):
  return [f"--config.data.train_glob={train_glob or data['train']}", f"--config.data.val_glob={data['val']}",
          *COMMON, *extra]


def _config(data, train_glob=None, extra=()):
  return load_config("speechae.py:tiny", _overrides(data, train_glob, extra))


def _jsonl(workdir, split="train"):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["split"] == split]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data, compile_cache):
  """The uninterrupted run that every killed-and-resumed run must reproduce."""
  return train(_config(data), str(tmp_path_factory.mktemp("straight")))


# Runs scripts/train.py (argv[1:]) with a pause in the middle of saving the checkpoint of step
# $READ_JAX_TEST_PAUSE_STEP: orbax has written every file of that step into its temporary directory
# (arrays, iterator position, even commit_success.txt) and is about to rename it into place, the last
# act of the commit. The pause touches $READ_JAX_TEST_PAUSED, so the test kills exactly then.
PAUSE_BEFORE_COMMIT = """
import os, runpy, sys, time
step, marker, rename = os.environ["READ_JAX_TEST_PAUSE_STEP"], os.environ["READ_JAX_TEST_PAUSED"], os.rename
def paused_rename(src, dst, *args, **kwargs):
  if os.path.basename(os.fspath(dst)) == step and ".orbax-checkpoint-tmp" in os.fspath(src):
    open(marker, "w").close()
    time.sleep(600)
  return rename(src, dst, *args, **kwargs)
os.rename = paused_rename
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run_script_and_sigkill(workdir, data, compile_cache, ready, extra=(), prefix=(), env=()):
  """scripts/train.py on the test config in a subprocess, SIGKILLed as soon as ``ready()`` is true."""
  # Same XLA flags (8 fake devices) and precision as this process: the same programs, from the cache.
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=compile_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_DEFAULT_MATMUL_PRECISION="highest", JAX_PLATFORMS="cpu", **dict(env))
  cmd = [sys.executable, *prefix, os.path.join(REPO, "scripts", "train.py"), "--config", "configs/speechae.py:tiny",
         "--workdir", str(workdir), *_overrides(data, extra=extra)]
  log = workdir.parent / f"{workdir.name}.stderr.txt"
  with open(log, "wb") as stderr:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
      deadline = time.monotonic() + 240
      while not ready():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the moment to kill did not come within 240 s"
        time.sleep(0.05)
    finally:
      proc.send_signal(signal.SIGKILL)
      proc.wait()
  assert proc.returncode == -signal.SIGKILL


def _assert_resume_reproduces(straight, config, workdir, start):
  resumed = train(config, str(workdir))
  assert [s for s, _ in resumed["train"]] == list(range(start + 1, STEPS + 1))
  want = {s: m["loss"] for s, m in straight["train"]}
  got = {s: m["loss"] for s, m in resumed["train"]}
  assert got == {s: want[s] for s in got}  # bitwise equal: same params, optimizer state and batches
  assert resumed["val"][-1][1]["loss"] == straight["val"][-1][1]["loss"]


@pytest.mark.slow
def test_learns_and_resumes_exactly_after_sigkill(tmp_path, data, compile_cache, straight):
  val = dict(straight["val"])
  assert sorted(val) == [0, 40, 80]
  assert val[STEPS]["loss"] <= 0.5 * val[0]["loss"], (val[0], val[STEPS])
  assert val[STEPS]["mse"] <= 0.5 * val[0]["mse"], (val[0], val[STEPS])  # not just the contrastive term

  # Same run in a subprocess via the script, SIGKILLed while paused right after the step-N checkpoint.
  workdir = tmp_path / "killed"
  _run_script_and_sigkill(workdir, data, compile_cache, (workdir / "checkpoints" / str(HALF)).is_dir,
                          extra=["--config.train.pause_after_checkpoint_s=120"])
  assert sorted(os.listdir(workdir / "checkpoints")) == [str(HALF)]  # nothing after N was saved
  _assert_resume_reproduces(straight, _config(data), workdir, HALF)


@pytest.mark.slow
def test_sigkill_while_a_checkpoint_is_written_resumes_from_the_last_complete_one(tmp_path, data, compile_cache,
                                                                                  straight):
  """Killed in the middle of saving the step-2N checkpoint (every file written, not yet committed): the
  half-written step is not taken for a checkpoint, the run resumes from step N and reproduces the
  uninterrupted losses; the resumed run then saves step 2N in place of the debris."""
  workdir, paused = tmp_path / "killed", tmp_path / "paused"
  _run_script_and_sigkill(workdir, data, compile_cache, paused.exists, prefix=["-c", PAUSE_BEFORE_COMMIT],
                          env={"READ_JAX_TEST_PAUSE_STEP": str(STEPS), "READ_JAX_TEST_PAUSED": str(paused)})
  left = sorted(os.listdir(workdir / "checkpoints"))
  partial = [d for d in left if d.startswith(f"{STEPS}.orbax-checkpoint-tmp")]
  assert [d for d in left if d.isdigit()] == [str(HALF)] and len(partial) == 1, left
  written = [f for _, _, files in os.walk(workdir / "checkpoints" / partial[0]) for f in files]
  assert "commit_success.txt" in written and len(written) > 5, written  # killed mid-save, after the arrays
  reader = ckpt_lib.Checkpointer(str(workdir), keep=3)
  assert reader.latest_step() == HALF
  reader.close()

  _assert_resume_reproduces(straight, _config(data), workdir, HALF)
  assert sorted(os.listdir(workdir / "checkpoints")) == [str(HALF), str(STEPS)]  # the debris replaced


@pytest.mark.slow
def test_sigterm_checkpoints_and_nonfinite_steps_are_skipped(tmp_path, data, compile_cache, monkeypatch):
  # SIGTERM arrives while the 20th batch is read; the loop finishes that step, checkpoints and returns.
  make_iterator = loop.records.make_iterator

  def iterator_that_sends_sigterm(ds, workers):
    it = make_iterator(ds, workers)
    count = {"n": 0}

    class Wrapped:
      def __next__(self):
        count["n"] += 1
        if count["n"] == 20:
          os.kill(os.getpid(), signal.SIGTERM)
        return next(it)

      def __getattr__(self, name):
        return getattr(it, name)

    return Wrapped()

  monkeypatch.setattr(loop.records, "make_iterator", iterator_that_sends_sigterm)
  workdir = str(tmp_path / "w")
  out = train(_config(data, data["some_nan"]), workdir)
  assert out["step"] == 20
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["20"]

  rows = _jsonl(workdir)
  bad = [r["step"] for r in rows if r["nonfinite"]]
  assert 5 <= len(bad) <= 7, bad  # one NaN batch per 3-batch epoch (48 clips / 16), 20 steps
  for r in rows:
    prev = next((p for p in rows if p["step"] == r["step"] - 1), None)
    if r["nonfinite"]:
      assert not np.isfinite(r["loss"]) and r["update_norm"] == 0
      assert r["nonfinite_in_row"] == (prev["nonfinite_in_row"] + 1 if prev else 1)
      if prev is not None:
        assert r["param_norm"] == prev["param_norm"]  # the update was skipped
    else:
      assert np.isfinite(r["loss"]) and r["nonfinite_in_row"] == 0
  assert np.isfinite(out["train"][-1][1]["param_norm"])

  # config.init_checkpoint's reader: the params of another run's latest checkpoint, on our shardings.
  params = out["state"].params
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), params)
  restored = ckpt_lib.restore_params(workdir, abstract)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), jax.device_get(params))
  with pytest.raises(CheckpointError, match="init_checkpoint"):
    ckpt_lib.restore_params(str(tmp_path / "nowhere"), abstract)


def test_halts_after_max_nonfinite_in_row(tmp_path, data, compile_cache):
  workdir = str(tmp_path / "w")
  with pytest.raises(NonFiniteLossError, match=r"non-finite for 3 steps in a row.*max_nonfinite_in_row=3"):
    train(_config(data, data["all_nan"], ["--config.train.max_nonfinite_in_row=3"]), workdir)
  rows = _jsonl(workdir)
  assert [r["step"] for r in rows] == [1, 2, 3]
  assert len({r["param_norm"] for r in rows}) == 1  # params never moved


@pytest.mark.slow
def test_one_device_equals_eight(data, compile_cache):
  """The same 3 train steps on a data 2 × fsdp 4 mesh (the loop tests' program) and on 1 device with
  the batch in 2 accumulated micro-batches: same losses within 1e-5."""
  config = _config(data)
  stage = make_stage(config)
  train_ds = stage.datasets(0, 1)[0]
  key = jax.random.key(3)
  runs = ((jax.devices(), []),
          (jax.devices()[:1], ["--config.mesh.data=1", "--config.mesh.fsdp=1", "--config.train.accum_steps=2"]))
  results, meshes, init_state = [], [], None
  for devices, extra in runs:
    c = load_config("speechae.py:tiny", _overrides(data, extra=extra))
    trainer = Trainer(c, stage, sharding.make_mesh(c.mesh, devices))
    meshes.append(dict(trainer.mesh.shape))
    with trainer.context():
      if init_state is None:
        init_state = jax.device_get(trainer.init(jax.random.key(0)))  # one init compile; moved to the other mesh
      state = jax.device_put(init_state, trainer.state_shardings)
      metrics = []
      for i in range(3):  # lr is 0 at step 0 (warmup), so steps 2 and 3 see updated params
        state, m = trainer.step(state, trainer.shard(train_ds[i]), key)
        metrics.append(jax.device_get(m))
      results.append(metrics)
  assert meshes == [{"data": 2, "fsdp": 4, "tensor": 1}, {"data": 1, "fsdp": 1, "tensor": 1}]
  eight, one = results
  for a, b in zip(eight, one):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-4)
    np.testing.assert_allclose(a["update_norm"], b["update_norm"], rtol=1e-3)
  assert one[2]["update_norm"] > 0 and one[2]["loss"] != one[1]["loss"]


def test_mesh_sizes_name_the_devices_used():
  """Explicit sizes smaller than the machine run on the first devices (the tiny configs: one); -1 takes every
  device; sizes that do not fit are one error naming them."""
  mesh = lambda **sizes: sharding.make_mesh(ml_collections.ConfigDict({"data": 1, "fsdp": 1, "tensor": 1, **sizes}))  # noqa: E731
  assert mesh().devices.size == 1 and mesh().devices.flat[0] == jax.devices()[0]
  assert dict(mesh(data=3).shape) == {"data": 3, "fsdp": 1, "tensor": 1}
  assert mesh(data=-1, fsdp=2).devices.size == len(jax.devices()) == 8
  with pytest.raises(ConfigError, match="needs 16 devices"):
    mesh(data=4, fsdp=4)
  with pytest.raises(ConfigError, match="not divisible by 3"):
    mesh(data=-1, fsdp=3)
