"""Test setup and the fixtures many files share.

Before jax is imported anywhere: 8 fake CPU devices, for the tests about sharding and several devices (they ask
for them explicitly; everything else runs on one). After it: the commands the tests run as subprocesses share one
persistent compilation cache made for this test session, so a second subprocess running a program another one
compiled compiles nothing (this process keeps no cache of its own: what it compiles is counted by
:func:`count_compiles`).

Shared, built once per session (treat them as read-only: ``pipe.with_config(...)`` or ``copy.copy`` to change one):
  tiny_pipeline     ReadPipeline of configs/demo.py:tiny with fresh weights (64² frames, clips of 3 latent frames)
  tiny_checkpoint   that pipeline saved as a checkpoint directory
  demo_pipeline     the bundled demo model (assets/demo)
  tiny_rolling_engine  a started serving engine of tiny_pipeline in rolling mode (batch sizes 1 and 2)
"""

import contextlib
import os
import shutil
import tempfile

# XLA's backend optimisation off unless the environment says otherwise: the suite's programs are small and
# compiled once, so compiling takes most of its time, and level 0 compiles in about half the time (a tiny
# stage-2 train step: 10.4 s → 4.4 s) at no cost to what the tests check.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_backend_optimization_level" not in _flags:
  _flags += " --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402
from jax import monitoring  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

# Read by the subprocesses only: jax has read its environment above. READ_JAX_CACHE for the commands that turn the
# cache on themselves (read_jax.cli.compilation_cache), JAX_* for every other command.
_SUBPROCESS_CACHE = tempfile.mkdtemp(prefix="read_jax_tests_jax_cache_")
os.environ["READ_JAX_CACHE"] = _SUBPROCESS_CACHE
os.environ["JAX_COMPILATION_CACHE_DIR"] = _SUBPROCESS_CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "assets", "demo")


# The files of a minute or more (``--durations``) run first, so that with ``-n 2 --dist loadfile`` the two workers
# end together instead of one finishing a long file alone.
LONG_FILES = ("test_demo.py", "test_stage2.py", "test_distill.py", "test_causal.py", "test_evaluate.py",
              "test_live_cli.py", "test_serve_engine.py", "test_live_stream_decode.py", "test_train_loop.py")


def pytest_collection_modifyitems(session, config, items):
  def rank(item):
    name = os.path.basename(str(item.fspath))
    return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)
  items.sort(key=rank)  # stable: the order within a file, and of the other files, is kept


def pytest_sessionfinish(session, exitstatus):
  shutil.rmtree(_SUBPROCESS_CACHE, ignore_errors=True)


class _CompileCounter:
  """Backend compilations (jax.monitoring's compile event) while a :meth:`counting` block is open."""

  def __init__(self):
    self.count, self.active = 0, False
    monitoring.register_event_duration_secs_listener(self._listen)

  def _listen(self, event, duration, **kwargs):
    if self.active and event == "/jax/core/compile/backend_compile_duration":
      self.count += 1

  @contextlib.contextmanager
  def counting(self):
    """Count from zero; a persistent cache (a test may turn one on in this process) is off meanwhile, so a
    program served from disk still counts as compiled."""
    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    self.count, self.active = 0, True
    try:
      yield self
    finally:
      self.active = False
      jax.config.update("jax_enable_compilation_cache", enabled)


_COMPILES = _CompileCounter()


@pytest.fixture
def count_compiles():
  """``with count_compiles() as c: ...`` then ``c.count``: the backend compilations inside the block."""
  return _COMPILES.counting


@pytest.fixture(scope="session")
def tiny_pipeline():
  from read_jax.config import load_config
  from read_jax.pipeline import ReadPipeline
  return ReadPipeline.from_config(jax.random.key(0), load_config("demo.py:tiny"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_pipeline, tmp_path_factory):
  path = tmp_path_factory.mktemp("tiny_checkpoint") / "tiny"
  tiny_pipeline.save_pretrained(str(path))
  return path


@pytest.fixture(scope="session")
def demo_pipeline():
  from read_jax.pipeline import ReadPipeline
  if not os.path.isdir(DEMO):
    pytest.skip("assets/demo (the bundled demo checkpoint) is missing")
  return ReadPipeline.from_pretrained(DEMO)


@pytest.fixture(scope="session")
def tiny_rolling_engine(tiny_pipeline):
  """A started serving engine of tiny_pipeline in rolling mode (its ``pipe``): batch sizes 1 and 2 on one lane,
  no admission by time; shared by the live-mode server tests and the LiveKit worker's."""
  from read_jax.serve.engine import Engine
  engine = Engine(tiny_pipeline.with_config(live_mode="rolling"), batch_sizes=(1, 2), max_sessions=4,
                  realtime_margin=None, devices=jax.local_devices()[:1]).start()
  yield engine
  engine.stop(cancel=True)
