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


@pytest.mark.parametrize("kernel,causal", [(3, True), ((3, 1, 3), False), ((1, 3, 3), False)])
def test_streamed_conv_equals_whole_video(kernel, causal):
  """A video fed in chunks (first, next, next, last) through the conv's cache gives the whole video's output, with
  a cache of fixed shape [B, kT − 1, H, W, C]; a non-causal conv lags by its future taps: (kT − 1) // 2 frames
  fewer at the first step and as many more at the last (read_jax.nn.causal_conv.stream_delay)."""
  x = jax.random.normal(jax.random.key(3), (2, 11, 5, 7, 3))
  module = causal_conv.CausalConv3d(4, kernel, causal=causal)
  params = module.init(jax.random.key(4), x)
  want = np.asarray(module.apply(params, x))
  kt = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
  lag = causal_conv.stream_delay(kt, causal)
  outs, cache = [], {}
  for mode, (a, b) in [("first", (0, 2)), ("next", (2, 3)), ("next", (3, 7)), ("next", (7, 11)), ("last", (11, 11))]:
    y, mutated = module.clone(stream=mode).apply({**params, **cache}, x[:, a:b], mutable=["cache"])
    outs.append(np.asarray(y))
    cache = mutated
    shapes = {k: v.shape for k, v in cache.get("cache", {}).items()}
    assert shapes == ({"frames": (2, kt - 1, 5, 7, 3)} if kt > 1 else {})
  assert [o.shape[1] for o in outs] == [2 - lag, 1, 4, 4, lag]
  np.testing.assert_allclose(np.concatenate(outs, axis=1), want, rtol=1e-5, atol=1e-5)
