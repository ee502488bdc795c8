"""A causal 1-D convolution over time: left padding only, so no output sees a later input.

Definition of "causal" used throughout read_jax for strided convolutions: with kernel K and
stride s the input is padded on the left by K − s zeros, so output m reads inputs
s·m − (K − s) … s·m + s − 1. Output m therefore depends on no input after s·(m + 1) − 1, the last
input of its own stride block. For s = 1 this is the usual causal convolution (left pad K − 1,
output m reads inputs m − K + 1 … m); for s = 2 each output covers its own pair of inputs plus
K − 2 earlier ones, so stacking three stride-2 layers maps inputs 8m … 8m + 7 (and earlier) to
output m, and no input is dropped at the end of the sequence.

PyTorch equivalent (what ``flax_to_torch`` maps the parameters onto, key ``<name>.conv.weight``
[O, I, K]): ``torch.nn.Conv1d(I, O, K, stride=s)(F.pad(x, (K - s, 0)))`` on ``[B, C, L]``.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class CausalConv1D(nn.Module):
  """``[B, L, C] → [B, L // stride, features]``; output m depends on inputs ≤ stride·(m+1) − 1."""

  features: int  # output channels
  kernel_size: int = 3  # taps in time; must be ≥ stride so that every input is read
  stride: int = 1  # temporal downsampling factor; L must be a multiple of it
  use_bias: bool = True  # additive bias per output channel
  dtype: jnp.dtype | None = None  # compute dtype (None: from the inputs)
  param_dtype: jnp.dtype = jnp.float32  # storage dtype of kernel and bias

  @nn.compact
  def __call__(self, x):  # [B, L, C]
    if self.stride < 1 or self.kernel_size < self.stride:
      raise ValueError(f"CausalConv1D: kernel_size={self.kernel_size} must be ≥ stride={self.stride} ≥ 1 "
                       "(a smaller kernel would skip inputs)")
    length = x.shape[-2]
    if length % self.stride:
      raise ValueError(f"CausalConv1D: sequence length {length} is not a multiple of stride {self.stride}")
    pad = self.kernel_size - self.stride
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(pad, 0), (0, 0)])  # [B, pad + L, C], zeros in front only
    # Submodule named "conv" so the torch key is "<name>.conv.weight", as in LTX's CausalConv3d.
    return nn.Conv(self.features, (self.kernel_size,), strides=(self.stride,), padding="VALID",
                   use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                   name="conv")(x)  # [B, L // stride, features]
