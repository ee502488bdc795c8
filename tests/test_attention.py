"""read_jax/nn/attention.py: implementation choice per target platform, and the splash path.

The splash kernel runs here in the Pallas interpreter (CPU); ``tests/test_aot.py`` checks that it
lowers and compiles for a TPU slice.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from read_jax.nn import attention


def _qkv(shape, seed=0):
  return tuple(jax.random.normal(k, shape) for k in jax.random.split(jax.random.key(seed), 3))


def test_auto_follows_the_compilation_target():
  assert attention.resolve("auto") == ("cudnn" if jax.default_backend() == "gpu" else "xla")
  with attention.compilation_target("tpu"):
    assert attention.target_platform() == "tpu"
    assert attention.resolve("auto") == "splash"
    assert attention.resolve("auto", masked=True) == "xla"  # splash takes no mask
    assert attention.resolve("xla") == "xla"
  with attention.compilation_target("gpu"):
    assert attention.resolve("auto") == "cudnn" and attention.resolve("auto", masked=True) == "cudnn"
  assert attention.target_platform() == jax.default_backend()  # the context is undone
  with pytest.raises(ValueError, match="not one of"):
    attention.resolve("flash")


def test_splash_refuses_other_targets_and_masks():
  q, k, v = _qkv((1, 7, 2, 8))
  with attention.compilation_target("cpu"), pytest.raises(ValueError, match="needs a TPU target"):
    attention.dot_product_attention(q, k, v, implementation="splash")
  with attention.compilation_target("tpu"), pytest.raises(ValueError, match="supports no mask"):
    attention.dot_product_attention(q, k, v, jnp.ones((1, 1, 7, 7), bool), implementation="splash")


@pytest.mark.slow
@pytest.mark.parametrize("length", [45, 128])  # padded to a whole kernel block / exactly one block
def test_splash_matches_xla_values_and_gradients(length):
  q, k, v = _qkv((2, length, 3, 8))
  loss = lambda f: lambda q, k, v: jnp.sum(jnp.sin(f(q, k, v)))  # noqa: E731
  xla = lambda q, k, v: attention.dot_product_attention(q, k, v, implementation="xla")  # noqa: E731
  splash = lambda q, k, v: attention._splash_attention(q, k, v, interpret=True)  # noqa: E731
  np.testing.assert_allclose(splash(q, k, v), xla(q, k, v), atol=2e-6)
  for got, want in zip(jax.grad(loss(splash), argnums=(0, 1, 2))(q, k, v),
                       jax.grad(loss(xla), argnums=(0, 1, 2))(q, k, v)):
    np.testing.assert_allclose(got, want, atol=5e-6)


def test_splash_under_a_mesh_runs_per_shard():
  """Batch over data×fsdp, heads over tensor (the logical rules), as in the models; same values."""
  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3)
  rules = (("batch", ("data", "fsdp")), ("heads", "tensor"))
  q, k, v = _qkv((4, 45, 6, 8), seed=1)
  want = attention.dot_product_attention(q, k, v, implementation="xla")
  fn = jax.jit(lambda q, k, v: attention._splash_attention(q, k, v, interpret=True))
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    text = fn.lower(q, k, v).as_text()
    got = fn(q, k, v)
  assert "tensor<1x45x3x8xf32>" in text  # the shard_map body: one example and 3 of the 6 heads
  np.testing.assert_allclose(got, want, atol=2e-6)
  # A dimension the mesh axes do not divide stays whole (5 examples over data×fsdp = 4).
  assert attention._divisible_axes(("data", "fsdp"), 5, mesh) is None
  assert attention._divisible_axes("tensor", 6, mesh) == "tensor"
  assert P(*(attention._divisible_axes(a, d, mesh) for a, d in zip((None, "tensor"), (3, 3)))) == P(None, None)
