"""Test setup: 8 fake CPU devices, set before jax is imported anywhere."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("READ_JAX_CACHE", "off")  # commands run by tests keep no compilation cache (one test sets one)

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
