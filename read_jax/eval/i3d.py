"""FVD's I3D (Inception-v1 inflated to 3D, trained on Kinetics-400), giving the 400 logits FVD is computed on.

The same network as cd-fvd 0.1.1's ``InceptionI3d(400, in_channels=3)`` (piergiaj's pytorch-i3d port of the
DeepMind graph), so its ``i3d_pretrained_400.pt`` weights load unchanged (after saving them as safetensors)
and scores are comparable with cd-fvd's. cd-fvd computes FVD on the model's forward output: the 400
Kinetics **logits** (before softmax), averaged over the time steps left after the final average pool; the
1024-d pooled Mixed_5c features are offered too (``output="features"``).

  i3d_preprocess(frames)      uint8 [T, H, W, 3] (or [B, T, H, W, 3]) in [0, 255] (RGB)
                              → float32 [T, 224, 224, 3] in [−1, 1], as cd-fvd's ``preprocess_i3d``
  I3D()(video)                float [B, T, H, W, 3] in [−1, 1] → float32 [B, 400] logits
  I3D()(video, "features")    → float32 [B, 1024] (average-pooled Mixed_5c, averaged over time)
  i3d_params_from_torch(sd)   cd-fvd/pytorch-i3d state dict → Flax variables
  load_i3d(path)              the same from a safetensors file

cd-fvd feeds the network whole clips, every frame, with no sampling: ``compute_fvd`` takes the videos it is
given, and its data loader cuts clips of ``CLIP_FRAMES`` = 16 consecutive frames. At 224×224 and 16 frames
the map before the pool is [2, 7, 7] and the pool leaves one time step. The network needs H and W in
193…224 (a 7×7 map before the 7×7 pool, as the reference's squeeze does) and T ≥ 9 (two time steps there).

Two details of the reference are kept because they change numbers: every convolution and max pool pads
"same" the TensorFlow way, computed from the input size, putting the odd extra row at the end (an even
size under stride 2 pads asymmetrically); and the max pools pad with zeros, not −inf (the same here, as
every pooled input follows a ReLU, but kept literal). BatchNorm uses its running statistics, eps 1e-5.

Module and parameter names are the reference's (``Mixed_4b/b1b/conv3d``), so a key in a PyTorch checkpoint
names its Flax parameter.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from read_jax.eval.inception import resize_bilinear
from read_jax.files import check_keys, flatten, read_safetensors, unflatten

SIZE = 224  # cd-fvd's TARGET_RESOLUTION, height and width
CLIP_FRAMES = 16  # the clip length of cd-fvd's data loader (``sequence_length``) and of the I3D training
CLASSES = 400  # Kinetics-400: the logits FVD is computed on
FEATURES = 1024  # width of Mixed_5c and of the pooled features
_BN_EPS = 1e-5  # the reference's BatchNorm3d eps

# (name, branch widths) of the Inception modules: 1×1 | 1×1 → 3×3×3 | 1×1 → 3×3×3 | max pool → 1×1.
_MIXED = {
  "Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
  "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
  "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
  "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
  "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# Flax leaf (collection, module, name) ↔ torch leaf (module.name).
_LEAVES = {("params", "conv3d", "kernel"): "conv3d.weight", ("params", "conv3d", "bias"): "conv3d.bias",
           ("params", "bn", "scale"): "bn.weight", ("params", "bn", "bias"): "bn.bias",
           ("batch_stats", "bn", "mean"): "bn.running_mean", ("batch_stats", "bn", "var"): "bn.running_var"}


def i3d_preprocess(frames):
  """uint8 frames [T, H, W, 3] (or [B, T, H, W, 3]) in [0, 255] → float32 [T, 224, 224, 3] in [−1, 1].

  cd-fvd's ``preprocess_i3d``: bilinear resize of each frame to 224×224 on the 0…255 values (torch's
  ``align_corners=False``, no antialiasing when shrinking), then ``2x/255 − 1``, in that order. All frames
  are kept: choosing the clip (cd-fvd: 16 consecutive frames) is the caller's.
  """
  if frames.ndim not in (4, 5) or frames.shape[-1] != 3:
    raise ValueError(f"i3d_preprocess: frames must be [T, H, W, 3] or [B, T, H, W, 3], got shape {frames.shape}")
  lead = frames.shape[:-3]
  x = jnp.asarray(frames, jnp.float32).reshape(-1, *frames.shape[-3:])  # [B·T, H, W, 3]
  x = resize_bilinear(x, (SIZE, SIZE))
  x = 2.0 * x / 255.0 - 1.0
  return x.reshape(*lead, SIZE, SIZE, 3)


def _same_pads(sizes, kernel, strides) -> list[tuple[int, int]]:
  """The reference's TF "same" padding per axis: k − s if s divides the size, else k − (size mod s), at
  least 0; the smaller half in front (so an odd total puts the extra one at the end)."""
  pads = []
  for n, k, s in zip(sizes, kernel, strides):
    total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
    pads.append((total // 2, total - total // 2))
  return pads


def _max_pool(x, window: tuple[int, int, int], strides: tuple[int, int, int]):
  """[B, T, H, W, C] max pool with the reference's "same" padding, padded with zeros as its ``F.pad``."""
  x = jnp.pad(x, [(0, 0), *_same_pads(x.shape[1:4], window, strides), (0, 0)])
  return nn.max_pool(x, window, strides)


class Unit3D(nn.Module):
  """The reference's Unit3D: "same"-padded Conv3d → BatchNorm (running statistics) → ReLU; the logits layer
  is a plain convolution with a bias."""
  features: int  # output channels
  kernel: tuple[int, int, int] = (1, 1, 1)  # (kt, kh, kw)
  strides: tuple[int, int, int] = (1, 1, 1)
  norm_relu: bool = True  # False: bias, no BatchNorm, no activation (the logits layer)
  dtype: Any = jnp.float32  # convolution compute dtype (the norm computes in float32)
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):  # [B, T, H, W, C]
    pads = _same_pads(x.shape[1:4], self.kernel, self.strides)
    x = nn.Conv(self.features, self.kernel, self.strides, pads, use_bias=not self.norm_relu, dtype=self.dtype,
                param_dtype=self.param_dtype, name="conv3d")(x)
    if not self.norm_relu:
      return x
    x = nn.BatchNorm(use_running_average=True, epsilon=_BN_EPS, dtype=jnp.float32, param_dtype=self.param_dtype,
                     name="bn")(x)
    return nn.relu(x)


def _unit(parent: nn.Module, name: str, features: int, kernel=1, strides=1, norm_relu=True) -> Unit3D:
  triple = lambda v: (v,) * 3 if isinstance(v, int) else tuple(v)
  return Unit3D(features, triple(kernel), triple(strides), norm_relu, dtype=parent.dtype,
                param_dtype=parent.param_dtype, name=name)


class InceptionModule(nn.Module):
  """Mixed_3b…5c: four branches concatenated on channels (``b0``, ``b1a→b1b``, ``b2a→b2b``, pool → ``b3b``)."""
  widths: tuple[int, int, int, int, int, int]  # b0, b1a, b1b, b2a, b2b, b3b output channels
  dtype: Any = jnp.float32  # convolution compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):  # [B, T, H, W, C] → [B, T, H, W, w0 + w2 + w4 + w5]
    u = functools.partial(_unit, self)
    w = self.widths
    b0 = u("b0", w[0])(x)
    b1 = u("b1b", w[2], 3)(u("b1a", w[1])(x))
    b2 = u("b2b", w[4], 3)(u("b2a", w[3])(x))
    b3 = u("b3b", w[5])(_max_pool(x, (3, 3, 3), (1, 1, 1)))
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class I3D(nn.Module):
  """Video [B, T, H, W, 3] → Kinetics logits [B, 400] (FVD's input, cd-fvd's) or pooled features [B, 1024].

  Input: float in [−1, 1], RGB, channel-last: what :func:`i3d_preprocess` gives (cd-fvd's range; the video
  models' [−1, 1] is the same range, but resize to 224×224 first). H, W in 193…224 and T ≥ 9 (see the
  module docstring); the range is not checked.
  """
  num_classes: int = CLASSES  # outputs of the logits layer
  dtype: Any = jnp.float32  # convolution compute dtype; keep float32 for scores comparable with others'
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, video, output: str = "logits"):
    """``output``: "logits" (cd-fvd's FVD features, [B, num_classes]) or "features" ([B, 1024])."""
    if video.ndim != 5 or video.shape[-1] != 3:
      raise ValueError(f"I3D: video must be [B, T, H, W, 3], got shape {video.shape}")
    if output not in ("logits", "features"):
      raise ValueError(f"I3D: output must be 'logits' or 'features', got {output!r}")
    u = functools.partial(_unit, self)
    x = video.astype(self.dtype)
    x = u("Conv3d_1a_7x7", 64, 7, strides=2)(x)  # [B, T/2, 112, 112, 64] at 224
    x = _max_pool(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_2a_3x3
    x = u("Conv3d_2c_3x3", 192, 3)(u("Conv3d_2b_1x1", 64)(x))
    x = _max_pool(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_3a_3x3: [B, T/2, 28, 28, 192]
    for name in ("Mixed_3b", "Mixed_3c"):
      x = InceptionModule(_MIXED[name], dtype=self.dtype, param_dtype=self.param_dtype, name=name)(x)
    x = _max_pool(x, (3, 3, 3), (2, 2, 2))  # MaxPool3d_4a_3x3: [B, T/4, 14, 14, 480]
    for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
      x = InceptionModule(_MIXED[name], dtype=self.dtype, param_dtype=self.param_dtype, name=name)(x)
    x = _max_pool(x, (2, 2, 2), (2, 2, 2))  # MaxPool3d_5a_2x2: [B, T/8, 7, 7, 832]
    for name in ("Mixed_5b", "Mixed_5c"):
      x = InceptionModule(_MIXED[name], dtype=self.dtype, param_dtype=self.param_dtype, name=name)(x)
    if x.shape[1] < 2 or x.shape[2:4] != (7, 7):
      raise ValueError(f"I3D: video {video.shape} gives a Mixed_5c map of {x.shape[1:4]}; the [2, 7, 7] average "
                       "pool needs at least [2, 7, 7] and exactly 7×7 (H, W in 193…224, T ≥ 9)")
    # The reference's AvgPool3d([2, 7, 7], stride 1, no padding); its dropout is off at inference.
    x = nn.avg_pool(x.astype(jnp.float32), (2, 7, 7), (1, 1, 1))  # [B, T/8 − 1, 1, 1, 1024]
    if output == "features":
      return x.mean(axis=(1, 2, 3))  # [B, 1024]
    x = u("logits", self.num_classes, norm_relu=False)(x)
    return x.astype(jnp.float32).mean(axis=(1, 2, 3))  # [B, num_classes]: the reference's mean over time


def _torch_key(flax_path: str) -> str:
  """"params/Mixed_4b/b1b/conv3d/kernel" → "Mixed_4b.b1b.conv3d.weight"."""
  collection, *modules, layer, leaf = flax_path.split("/")
  return ".".join([*modules, _LEAVES[(collection, layer, leaf)]])


def _flax_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
  """{flax path: shape} of every variable, from an abstract init (nothing is computed)."""
  video = jax.ShapeDtypeStruct((1, CLIP_FRAMES, SIZE, SIZE, 3), jnp.float32)
  abstract = jax.eval_shape(I3D(num_classes).init, jax.random.key(0), video)
  return {k: tuple(v.shape) for k, v in flatten(abstract).items()}


def torch_state_shapes(num_classes: int = CLASSES) -> dict[str, tuple[int, ...]]:
  """{reference key: torch shape} of the tensors a checkpoint must hold (conv weights [O, I, kt, kh, kw])."""
  out = {}
  for path, shape in _flax_shapes(num_classes).items():
    out[_torch_key(path)] = (shape[4], shape[3], *shape[:3]) if len(shape) == 5 else shape
  return out


def _numpy(value) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor (torch itself is not imported here)
    value = value.detach().cpu().numpy()
  return np.asarray(value, np.float32)


def i3d_params_from_torch(state_dict: Mapping, num_classes: int = CLASSES) -> dict:
  """Flax variables ``{"params": …, "batch_stats": …}`` of :class:`I3D` from a PyTorch state dict.

  Keys as cd-fvd's ``InceptionI3d(400, in_channels=3).state_dict()`` names them (``Mixed_4b.b1b.conv3d.weight``,
  ``logits.conv3d.bias``); values torch tensors or arrays. BatchNorm step counters are ignored. A missing,
  unexpected or mis-shaped tensor is a :class:`~read_jax.errors.CheckpointError` listing them.
  """
  got = {k: _numpy(v) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
  check_keys("FVD I3D", got, torch_state_shapes(num_classes))
  flat = {}
  for path in _flax_shapes(num_classes):
    value = got[_torch_key(path)]
    flat[path] = jnp.asarray(value.transpose(2, 3, 4, 1, 0) if value.ndim == 5 else value)  # [kt, kh, kw, I, O]
  return unflatten(flat)


def load_i3d(path: str, num_classes: int = CLASSES) -> dict:
  """:func:`i3d_params_from_torch` of a safetensors file (only safetensors are read; save cd-fvd's
  ``i3d_pretrained_400.pt`` state dict with ``safetensors.torch.save_file`` first). Use as
  ``I3D().apply(variables, i3d_preprocess(frames)[None])``."""
  return i3d_params_from_torch(read_safetensors(path), num_classes)
