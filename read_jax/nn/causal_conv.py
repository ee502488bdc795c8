"""3D convolution padded the way LTX-Video's VAE pads: replicate in time, zeros in space.

Time: a causal conv repeats the first frame ``kT − 1`` times in front, so output frame t sees no
input frame after t; a non-causal one repeats the first and last frames ``(kT − 1) // 2`` times at
each end. Space: ``k // 2`` zeros on each side (torch Conv3d ``padding=(0, kH//2, kW//2)``).

On the CPU the 3D convolution runs as ONE 2D convolution over frames, with the kT temporal taps
stacked into the input channels (XLA's CPU 3D convolution is several times slower than its 2D one:
forward 6×, forward + backward 2.4× on the VAE's shapes); elsewhere (cuDNN, TPU) as a 3D convolution.
Both give the same result up to float rounding. A single frame (T = 1: an image, the reference
frame, the first-frame warm-up of the demo VAE) is padded with copies of itself, so every temporal tap
reads the same frame: it runs as a 2D convolution with the taps summed, kT times cheaper, same result.

Parameter names follow diffusers' ``LTXVideoCausalConv3d`` (a wrapper holding an ``nn.Conv3d``
called ``conv``): ``<name>/conv/kernel`` ``[kT, kH, kW, I, O]`` and ``<name>/conv/bias`` ``[O]``.

Streaming (``stream`` = "first" | "next" | "last", the streaming VAE decoder of read_jax.models.vae, docs/design.md
§3.10): a video arrives a few frames at a time and each call convolves only the new ones. The conv keeps the
last kT − 1 frames it read (the padded input) in the ``"cache"`` collection, variable ``frames``, and reads
them in front of the next frames, so the frames it emits over a stream are those of the whole-video
convolution. "first" starts a stream: it pads the front as the whole video would (the first frame repeated);
"next" continues it; "last" ends it, padding the back as the whole video would. A causal conv emits as many
frames as it reads; a non-causal one lags them by its (kT − 1) // 2 future taps (:func:`stream_delay`): its
first call emits that many fewer, its "last" call that many more.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


STREAM_MODES = ("", "first", "next", "last")  # "": the whole video in one call; else one step of a stream


def stream_delay(kernel_t: int, causal: bool) -> int:
  """Frames by which a streamed conv's output lags its input: its future taps, 0 for a causal conv."""
  return 0 if causal else (kernel_t - 1) // 2


def pad_time(x, kernel_t: int, causal: bool):
  """Replicate-pad axis 1 of ``x`` [B, T, H, W, C] for a temporal kernel of ``kernel_t`` taps."""
  if kernel_t == 1:
    return x
  if causal:
    left, right = kernel_t - 1, 0
  else:
    left = right = (kernel_t - 1) // 2
  parts = [jnp.repeat(x[:, :1], left, axis=1)] if left else []
  parts.append(x)
  if right:
    parts.append(jnp.repeat(x[:, -1:], right, axis=1))
  return jnp.concatenate(parts, axis=1)


class Conv3d(nn.Module):
  """Kernel and bias of a 3D convolution, applied to an already time-padded input; zero-pads space."""

  features: int  # output channels
  kernel_size: tuple[int, int, int]  # (kT, kH, kW)
  strides: tuple[int, int, int] = (1, 1, 1)  # (sT, sH, sW)
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x, one_frame: bool = False):  # x [B, T, H, W, C]
    """``one_frame``: x is a single frame standing for its kT replicate-padded copies."""
    kt, kh, kw = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (kt, kh, kw, x.shape[-1], self.features),
                         self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
    x = x.astype(self.dtype)
    if one_frame:  # the taps summed in the storage dtype, then cast
      y = _conv_2d(x[:, 0], kernel.sum(axis=0).astype(self.dtype), self.strides[1:])[:, None]
    elif jax.default_backend() == "cpu":
      y = _conv_taps_as_channels(x, kernel.astype(self.dtype), self.strides)
    else:
      y = _conv_3d(x, kernel.astype(self.dtype), self.strides)
    return y + bias.astype(self.dtype)  # [B, T', H', W', O]


def _conv_3d(x, kernel, strides):
  kh, kw = kernel.shape[1:3]
  return jax.lax.conv_general_dilated(
    x, kernel, window_strides=strides, padding=((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)),
    dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


def _conv_taps_as_channels(x, kernel, strides):
  """``_conv_3d`` as one 2D convolution: output frame t reads frames st·t + i (tap i) as channel block i."""
  kt, kh, kw, c, o = kernel.shape
  st = strides[0]
  b, frames = x.shape[:2]
  out_frames = (frames - kt) // st + 1
  taps = [x[:, i:i + st * (out_frames - 1) + 1:st] for i in range(kt)]  # each [B, T', H, W, C]
  x2 = jnp.concatenate(taps, axis=-1).reshape((b * out_frames,) + x.shape[2:4] + (kt * c,))
  k2 = jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kh, kw, kt * c, o)  # channel index = i·C + c
  y = _conv_2d(x2, k2, strides[1:])
  return y.reshape((b, out_frames) + y.shape[1:])


def _conv_2d(x, kernel, strides):  # x [N, H, W, C], kernel [kH, kW, C, O], zero-padded space
  kh, kw = kernel.shape[:2]
  return jax.lax.conv_general_dilated(x, kernel, window_strides=strides, padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


class CausalConv3d(nn.Module):
  """diffusers' LTXVideoCausalConv3d in channels-last layout."""

  features: int  # output channels
  kernel_size: int | Sequence[int] = 3  # one int for all three axes, or (kT, kH, kW)
  strides: int | Sequence[int] = 1  # one int for all three axes, or (sT, sH, sW)
  causal: bool = True  # replicate-pad the first frame only (see module docstring)
  stream: str = ""  # one of STREAM_MODES: "" the whole video, else a streaming step (module docstring)
  dtype: jnp.dtype = jnp.float32  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):  # x [B, T, H, W, C]
    kernel = tuple(self.kernel_size) if isinstance(self.kernel_size, Sequence) else (self.kernel_size,) * 3
    strides = tuple(self.strides) if isinstance(self.strides, Sequence) else (self.strides,) * 3
    conv = Conv3d(self.features, kernel, strides, dtype=self.dtype, param_dtype=self.param_dtype, name="conv")
    if self.stream and kernel[0] > 1:
      return self._stream(conv, x, kernel[0], strides)
    if x.shape[1] == 1 and (self.causal or kernel[0] % 2):  # every tap reads the one frame
      return conv(x, one_frame=True)
    return conv(pad_time(x, kernel[0], self.causal))

  def _stream(self, conv, x, kt: int, strides):  # x [B, T, H, W, C] the step's new frames
    if self.stream not in STREAM_MODES or strides[0] != 1:
      raise ValueError(f"CausalConv3d: stream={self.stream!r} with time stride {strides[0]} (streaming takes "
                       f"one of {STREAM_MODES[1:]} and time stride 1)")
    future = stream_delay(kt, self.causal)
    if self.stream == "first":
      if x.shape[1] < max(1, future):
        raise ValueError(f"CausalConv3d: a stream's first step needs at least {max(1, future)} frames here (to pad "
                         "the front with and fill the cache)")
      if x.shape[1] == 1 and self.causal:  # every tap reads the one frame, as in the whole video
        self.put_variable("cache", "frames", jnp.repeat(x, kt - 1, axis=1))
        return conv(x, one_frame=True)
      padded = jnp.concatenate([jnp.repeat(x[:, :1], kt - 1 - future, axis=1), x], axis=1)
    else:
      padded = jnp.concatenate([self.get_variable("cache", "frames"), x], axis=1)
      if self.stream == "last" and future:  # the end, padded as the whole video pads it
        padded = jnp.concatenate([padded, jnp.repeat(padded[:, -1:], future, axis=1)], axis=1)
    if self.stream != "last":
      self.put_variable("cache", "frames", padded[:, padded.shape[1] - (kt - 1):])  # [B, kT − 1, H, W, C]
    if padded.shape[1] < kt:  # nothing complete yet (a non-causal conv's first frames wait for their future)
      return jnp.zeros((x.shape[0], 0) + x.shape[2:4] + (self.features,), self.dtype)
    return conv(padded)  # [B, T − lag (first) | T (next) | T + lag (last), H, W, O], lag = stream_delay
