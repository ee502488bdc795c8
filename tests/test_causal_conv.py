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
