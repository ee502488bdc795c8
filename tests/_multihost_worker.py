"""One process of a multi-process CPU run: ``python _multihost_worker.py PORT NUM_PROCESSES PROCESS_ID WORKDIR [--config.* ...]``.

Each process gets 8 / NUM_PROCESSES fake CPU devices; collectives go over gloo on 127.0.0.1.
"""

import os
import sys

port, num_processes, process_id, workdir, *overrides = sys.argv[1:]
num_processes, process_id = int(num_processes), int(process_id)
flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]  # the suite's others kept
os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={8 // num_processes}"])
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_default_matmul_precision", "highest")
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes, process_id)
assert jax.device_count() == 8 and jax.process_count() == num_processes

from read_jax.config import load_config  # noqa: E402
from read_jax.train import train  # noqa: E402

train(load_config("a2v_dit.py:tiny", overrides), workdir)
