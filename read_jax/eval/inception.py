"""FID's InceptionV3 (the TensorFlow 2015-12-05 graph), giving the 2048-d pool3 features FID is computed on.

The same network as pytorch-fid 0.3.0's ``InceptionV3([3], resize_input=True, normalize_input=True,
use_fid_inception=True)``, so its weights load unchanged and scores are comparable with published FIDs.
The FID graph differs from torchvision's InceptionV3 in two ways, both kept here: the average pools in
the A, C and E blocks leave the zero padding out of the mean (``count_include_pad=False``), and the last E
block (Mixed_7c) max-pools its pool branch.

  FIDInceptionV3()(images)           uint8 [B, H, W, 3] in [0, 255] or float [B, H, W, 3] in [0, 1] (RGB)
                                     → float32 [B, 2048]
  inception_params_from_torch(sd)    pytorch-fid state dict → Flax variables
  load_inception(path)               the same from a safetensors file

Module and parameter names are torchvision's (``Mixed_5b/branch5x5_1/conv``), so a key in a PyTorch
checkpoint names its Flax parameter.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from read_jax.files import check_keys, flatten, read_safetensors, unflatten

SIZE = 299  # the network's input height and width
FEATURES = 2048  # pool3 width
_BN_EPS = 1e-3  # torchvision BasicConv2d's BatchNorm eps

# pytorch-fid keeps the layers in ``blocks.<i>.<j>``: these are their torchvision names, block by block (a
# max pool, which has no parameters, ends blocks 0 and 1).
_BLOCKS = (
  ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"),
  ("Conv2d_3b_1x1", "Conv2d_4a_3x3"),
  ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
  ("Mixed_7a", "Mixed_7b", "Mixed_7c"),
)
# Flax leaf (collection, module, name) ↔ torch leaf (module.name).
_LEAVES = {("params", "conv", "kernel"): "conv.weight", ("params", "bn", "scale"): "bn.weight",
           ("params", "bn", "bias"): "bn.bias", ("batch_stats", "bn", "mean"): "bn.running_mean",
           ("batch_stats", "bn", "var"): "bn.running_var"}


def resize_bilinear(images, size: tuple[int, int]):
  """float [B, H, W, C] → [B, *size, C], bilinear like torch's ``F.interpolate(mode='bilinear',
  align_corners=False)``: half-pixel centres and, when shrinking, no antialiasing (jax.image.resize's
  default antialias would low-pass first and change every downscaled FID)."""
  b, _, _, c = images.shape
  return jax.image.resize(images, (b, *size, c), "bilinear", antialias=False)


def _pair(v) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv(nn.Module):
  """torchvision's BasicConv2d: convolution without bias → BatchNorm (running statistics) → ReLU."""
  features: int  # output channels
  kernel: tuple[int, int]  # (kh, kw)
  strides: tuple[int, int] = (1, 1)
  padding: tuple[int, int] = (0, 0)  # zeros on each side of H and of W
  dtype: Any = jnp.float32  # convolution compute dtype (the norm computes in float32)
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel, self.strides, [(p, p) for p in self.padding], use_bias=False,
                dtype=self.dtype, param_dtype=self.param_dtype, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=_BN_EPS, dtype=jnp.float32, param_dtype=self.param_dtype,
                     name="bn")(x)
    return nn.relu(x)


def _conv(parent: nn.Module, name: str, features: int, kernel, strides=1, padding=0) -> BasicConv:
  return BasicConv(features, _pair(kernel), _pair(strides), _pair(padding), dtype=parent.dtype,
                   param_dtype=parent.param_dtype, name=name)


def _pool3(x, kind: str):
  """3×3 stride-1 pool keeping the size; the mean is over the pixels inside the image (TensorFlow's)."""
  if kind == "max":
    return nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_down(x):
  return nn.max_pool(x, (3, 3), (2, 2))  # 3×3 stride 2, no padding


class InceptionA(nn.Module):
  """Mixed_5b–5d (35×35): 1×1, 5×5, double 3×3 and pool branches."""
  pool_features: int  # channels of the pool branch
  dtype: Any = jnp.float32  # convolution compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):
    c = functools.partial(_conv, self)
    b1 = c("branch1x1", 64, 1)(x)
    b5 = c("branch5x5_2", 64, 5, padding=2)(c("branch5x5_1", 48, 1)(x))
    b3 = c("branch3x3dbl_1", 64, 1)(x)
    b3 = c("branch3x3dbl_3", 96, 3, padding=1)(c("branch3x3dbl_2", 96, 3, padding=1)(b3))
    bp = c("branch_pool", self.pool_features, 1)(_pool3(x, "avg"))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a: 35×35 → 17×17."""
  dtype: Any = jnp.float32  # convolution compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):
    c = functools.partial(_conv, self)
    b3 = c("branch3x3", 384, 3, strides=2)(x)
    bd = c("branch3x3dbl_2", 96, 3, padding=1)(c("branch3x3dbl_1", 64, 1)(x))
    bd = c("branch3x3dbl_3", 96, 3, strides=2)(bd)
    return jnp.concatenate([b3, bd, _max_pool_down(x)], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b–6e (17×17): factorised 7×7 branches."""
  channels_7x7: int  # width inside the 7×7 branches
  dtype: Any = jnp.float32  # convolution compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):
    c = functools.partial(_conv, self)
    c7 = self.channels_7x7
    row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
    b1 = c("branch1x1", 192, 1)(x)
    b7 = c("branch7x7_1", c7, 1)(x)
    b7 = c("branch7x7_3", 192, **col)(c("branch7x7_2", c7, **row)(b7))
    bd = c("branch7x7dbl_1", c7, 1)(x)
    for i, (features, shape) in enumerate([(c7, col), (c7, row), (c7, col), (192, row)], start=2):
      bd = c(f"branch7x7dbl_{i}", features, **shape)(bd)
    bp = c("branch_pool", 192, 1)(_pool3(x, "avg"))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a: 17×17 → 8×8."""
  dtype: Any = jnp.float32  # convolution compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):
    c = functools.partial(_conv, self)
    b3 = c("branch3x3_2", 320, 3, strides=2)(c("branch3x3_1", 192, 1)(x))
    b7 = c("branch7x7x3_1", 192, 1)(x)
    b7 = c("branch7x7x3_2", 192, (1, 7), padding=(0, 3))(b7)
    b7 = c("branch7x7x3_3", 192, (7, 1), padding=(3, 0))(b7)
    b7 = c("branch7x7x3_4", 192, 3, strides=2)(b7)
    return jnp.concatenate([b3, b7, _max_pool_down(x)], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b, 7c (8×8): 1×3 and 3×1 splits; the FID graph max-pools the pool branch of 7c."""
  pool: str = "avg"  # "avg" (Mixed_7b) or "max" (Mixed_7c)
  dtype: Any = jnp.float32  # convolution compute dtype
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):
    c = functools.partial(_conv, self)
    split = lambda prefix, y: jnp.concatenate([c(f"{prefix}a", 384, (1, 3), padding=(0, 1))(y),
                                               c(f"{prefix}b", 384, (3, 1), padding=(1, 0))(y)], axis=-1)
    b1 = c("branch1x1", 320, 1)(x)
    b3 = split("branch3x3_2", c("branch3x3_1", 384, 1)(x))
    bd = c("branch3x3dbl_2", 384, 3, padding=1)(c("branch3x3dbl_1", 448, 1)(x))
    bd = split("branch3x3dbl_3", bd)
    bp = c("branch_pool", 192, 1)(_pool3(x, self.pool))
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """Images → pool3 features [B, 2048]: resized to 299×299 (bilinear, as pytorch-fid), scaled to [−1, 1].

  Input: uint8 [B, H, W, 3] in [0, 255], or float [B, H, W, 3] in [0, 1] (pytorch-fid's range; not the
  [−1, 1] of the video models: map those with ``(x + 1) / 2`` first). The range is not checked.
  """
  dtype: Any = jnp.float32  # convolution compute dtype; keep float32 for scores comparable with others'
  param_dtype: Any = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, images):
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"FIDInceptionV3: images must be [B, H, W, 3], got shape {images.shape}")
    x = images.astype(jnp.float32)
    if images.dtype == jnp.uint8:
      x = x / 255.0
    x = 2.0 * resize_bilinear(x, (SIZE, SIZE)) - 1.0  # [B, 299, 299, 3]
    c = functools.partial(_conv, self)
    x = c("Conv2d_1a_3x3", 32, 3, strides=2)(x)
    x = c("Conv2d_2a_3x3", 32, 3)(x)
    x = _max_pool_down(c("Conv2d_2b_3x3", 64, 3, padding=1)(x))  # [B, 73, 73, 64]
    x = c("Conv2d_3b_1x1", 80, 1)(x)
    x = _max_pool_down(c("Conv2d_4a_3x3", 192, 3)(x))  # [B, 35, 35, 192]
    for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
      x = InceptionA(pool_features, dtype=self.dtype, param_dtype=self.param_dtype, name=name)(x)
    x = InceptionB(dtype=self.dtype, param_dtype=self.param_dtype, name="Mixed_6a")(x)  # [B, 17, 17, 768]
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(c7, dtype=self.dtype, param_dtype=self.param_dtype, name=name)(x)
    x = InceptionD(dtype=self.dtype, param_dtype=self.param_dtype, name="Mixed_7a")(x)  # [B, 8, 8, 1280]
    x = InceptionE("avg", dtype=self.dtype, param_dtype=self.param_dtype, name="Mixed_7b")(x)
    x = InceptionE("max", dtype=self.dtype, param_dtype=self.param_dtype, name="Mixed_7c")(x)  # [B, 8, 8, 2048]
    return x.astype(jnp.float32).mean(axis=(1, 2))  # [B, 2048]


def _torch_key(flax_path: str) -> str:
  """"params/Mixed_5b/branch1x1/conv/kernel" → "Mixed_5b.branch1x1.conv.weight"."""
  collection, *modules, layer, leaf = flax_path.split("/")
  return ".".join([*modules, _LEAVES[(collection, layer, leaf)]])


def _flax_shapes() -> dict[str, tuple[int, ...]]:
  """{flax path: shape} of every variable, from an abstract init (nothing is computed)."""
  images = jax.ShapeDtypeStruct((1, SIZE, SIZE, 3), jnp.float32)
  abstract = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), images)
  return {k: tuple(v.shape) for k, v in flatten(abstract).items()}


def torch_state_shapes() -> dict[str, tuple[int, ...]]:
  """{torchvision-named key: torch shape} of the tensors a checkpoint must hold (conv weights [O, I, kh, kw])."""
  out = {}
  for path, shape in _flax_shapes().items():
    out[_torch_key(path)] = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape
  return out


def _numpy(value) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor (torch itself is not imported here)
    value = value.detach().cpu().numpy()
  return np.asarray(value, np.float32)


def _torchvision_name(key: str) -> str:
  """pytorch-fid's "blocks.2.0.branch1x1.conv.weight" → "Mixed_5b.branch1x1.conv.weight"; others unchanged."""
  parts = key.split(".")
  if parts[0] == "blocks" and len(parts) > 3 and parts[1].isdigit() and parts[2].isdigit():
    block, layer = int(parts[1]), int(parts[2])
    if block < len(_BLOCKS) and layer < len(_BLOCKS[block]):
      return ".".join([_BLOCKS[block][layer], *parts[3:]])
  return key


def inception_params_from_torch(state_dict: Mapping) -> dict:
  """Flax variables ``{"params": …, "batch_stats": …}`` of :class:`FIDInceptionV3` from a PyTorch state dict.

  Keys as pytorch-fid's ``InceptionV3(...).state_dict()`` names them (``blocks.<i>.<j>.…``) or as the
  torchvision Inception3 of the FID weights file does (``Mixed_5b.…``); values torch tensors or arrays.
  BatchNorm step counters and the classifier (``fc.*``, unused by FID) are ignored. A missing, unexpected
  or mis-shaped tensor is a :class:`~read_jax.errors.CheckpointError` listing them (torchvision names).
  """
  got = {}
  for key, value in state_dict.items():
    name = _torchvision_name(key)
    if name.endswith("num_batches_tracked") or name.startswith("fc."):
      continue
    got[name] = _numpy(value)
  check_keys("FID Inception", got, torch_state_shapes())
  flat = {}
  for path in _flax_shapes():
    value = got[_torch_key(path)]
    flat[path] = jnp.asarray(value.transpose(2, 3, 1, 0) if value.ndim == 4 else value)  # [kh, kw, I, O]
  return unflatten(flat)


def load_inception(path: str) -> dict:
  """:func:`inception_params_from_torch` of a safetensors file (only safetensors are read; save a
  ``.pth`` state dict with ``safetensors.torch.save_file`` first). Use as
  ``FIDInceptionV3().apply(variables, images)``."""
  return inception_params_from_torch(read_safetensors(path))
