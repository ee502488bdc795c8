"""The CPU path of the LTX 3D convolution (temporal taps stacked into channels) = the 3D convolution."""

import jax
import numpy as np
import pytest

from read_jax.nn import causal_conv


@pytest.mark.parametrize("kernel,strides,frames", [((3, 3, 3), (1, 1, 1), 7), ((3, 3, 3), (2, 2, 2), 9),
                                                   ((3, 2, 1), (1, 2, 1), 5), ((1, 1, 1), (1, 1, 1), 4),
                                                   ((2, 3, 3), (2, 1, 1), 8)])
def test_taps_as_channels_equals_conv3d(kernel, strides, frames):
  kx, kk = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (2, frames, 6, 10, 3))
  w = jax.random.normal(kk, kernel + (3, 5))
  want = causal_conv._conv_3d(x, w, strides)
  got = causal_conv._conv_taps_as_channels(x, w, strides)
  assert got.shape == want.shape
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kernel,strides", [(3, 1), (3, 2), ((1, 3, 3), 1)])
def test_one_frame_equals_padded_conv3d(causal, kernel, strides):
  """One frame runs as a 2D convolution with the temporal taps summed: same values and gradients as
  the replicate-padded 3D convolution."""
  module = causal_conv.CausalConv3d(5, kernel, strides, causal=causal)
  x = jax.random.normal(jax.random.key(1), (2, 1, 8, 6, 3))
  params = module.init(jax.random.key(2), x)
  kt = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
  st = (strides,) * 3 if isinstance(strides, int) else strides

  def reference(p, x):
    conv = p["params"]["conv"]
    return causal_conv._conv_3d(causal_conv.pad_time(x, kt, causal), conv["kernel"], st) + conv["bias"]

  np.testing.assert_allclose(np.asarray(module.apply(params, x)), np.asarray(reference(params, x)),
                             rtol=1e-5, atol=1e-5)
  grad = lambda f: jax.grad(lambda p, x: (f(p, x) ** 2).sum(), argnums=(0, 1))(params, x)  # noqa: E731
  got, want = grad(module.apply), grad(reference)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-4)
