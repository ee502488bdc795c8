"""SpeechAE in PyTorch: the same network as :mod:`read_jax.models.speech_ae`, module for module.

Module paths equal the Flax param paths (``encoder.down_blocks.0.conv.conv.weight`` ...), so the
state dict is ``read_jax.convert.torch_layout.flax_to_torch(params)`` with no key table and
``load_state_dict(strict=True)`` checks every key. The causal convolution is ``Conv1d`` after a left
zero pad of K − s frames (read_jax.nn.causal_conv1d); the depth-to-space of an up block splits the
2D output channels into [frame 2m | frame 2m+1].

  model = SpeechAE.from_exported("torch_dir/speech_ae")
  c = model.encode(s)      # s [B, F, Hw, DA] → c [B, f, hw, dA]
  s_hat = model.decode(c)  # → [B, 1 + 8(f−1), Hw, DA]
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F
from torch import nn

from read_jax.constants import FRAMES_PER_LATENT

_NUM_BLOCKS = 3
_NORM_EPS = 1e-6
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CONFIG_FIELDS = ("feature_dim", "window", "hidden_dim", "latent_tokens", "latent_dim", "kernel_size")


class RMSNorm(nn.Module):
  """x / rms(x) · weight over the last axis, in float32 (read_jax.nn.norms.RMSNorm)."""

  def __init__(self, dim: int):
    super().__init__()
    self.weight = nn.Parameter(torch.ones(dim))

  def forward(self, x):
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + _NORM_EPS)
    return (y * self.weight.float()).to(x.dtype)


class CausalConv1D(nn.Module):
  """[B, L, C] → [B, L // stride, O]: left pad K − stride, then Conv1d (output m reads inputs ≤ s(m+1) − 1)."""

  def __init__(self, in_features: int, features: int, kernel_size: int, stride: int):
    super().__init__()
    self.pad = kernel_size - stride
    self.conv = nn.Conv1d(in_features, features, kernel_size, stride=stride)

  def forward(self, x):  # [B, L, C]
    h = F.pad(x.transpose(1, 2), (self.pad, 0))  # [B, C, pad + L]
    return self.conv(h).transpose(1, 2)  # [B, L // s, O]


class DownBlock(nn.Module):
  def __init__(self, dim: int, kernel_size: int):
    super().__init__()
    self.norm = RMSNorm(dim)
    self.conv = CausalConv1D(dim, dim, kernel_size, stride=2)

  def forward(self, x):  # [B, L, D] → [B, L/2, D]
    return F.silu(self.conv(self.norm(x)))


class UpBlock(nn.Module):
  def __init__(self, dim: int, kernel_size: int):
    super().__init__()
    self.norm = RMSNorm(dim)
    self.conv = CausalConv1D(dim, 2 * dim, kernel_size, stride=1)

  def forward(self, x):  # [B, L, D] → [B, 2L, D]
    h = F.silu(self.conv(self.norm(x)))  # [B, L, 2D]
    b, length, _ = h.shape
    return h.reshape(b, 2 * length, -1)  # channels [even frame | odd frame]


class SpeechAEEncoder(nn.Module):
  def __init__(self, feature_dim, window, hidden_dim, latent_tokens, latent_dim, kernel_size):
    super().__init__()
    self.latent_tokens, self.latent_dim = latent_tokens, latent_dim
    self.proj_in = nn.Linear(window * feature_dim, hidden_dim)
    self.down_blocks = nn.ModuleList([DownBlock(hidden_dim, kernel_size) for _ in range(_NUM_BLOCKS)])
    self.norm_out = RMSNorm(hidden_dim)
    self.proj_out = nn.Linear(hidden_dim, latent_tokens * latent_dim)

  def forward(self, s):  # [B, F, Hw, DA]
    b, num_frames = s.shape[:2]
    x = self.proj_in(s.reshape(b, num_frames, -1))  # [B, F, D]
    # Frame 0 fills its own group of 8 (latent 0 sees frame 0 only), as the JAX model.
    x = torch.cat([x[:, :1].expand(-1, FRAMES_PER_LATENT, -1), x[:, 1:]], dim=1)  # [B, 8f, D]
    for block in self.down_blocks:
      x = block(x)
    c = self.proj_out(self.norm_out(x))  # [B, f, hw·dA]
    return c.reshape(b, -1, self.latent_tokens, self.latent_dim)


class SpeechAEDecoder(nn.Module):
  def __init__(self, feature_dim, window, hidden_dim, latent_tokens, latent_dim, kernel_size):
    super().__init__()
    self.window, self.feature_dim = window, feature_dim
    self.proj_in = nn.Linear(latent_tokens * latent_dim, hidden_dim)
    self.up_blocks = nn.ModuleList([UpBlock(hidden_dim, kernel_size) for _ in range(_NUM_BLOCKS)])
    self.norm_out = RMSNorm(hidden_dim)
    self.proj_out = nn.Linear(hidden_dim, window * feature_dim)

  def forward(self, c):  # [B, f, hw, dA]
    b, f = c.shape[:2]
    x = self.proj_in(c.reshape(b, f, -1))
    for block in self.up_blocks:
      x = block(x)
    x = x[:, FRAMES_PER_LATENT - 1:]  # [B, F, D]: drop the mirror of the first-frame replication
    s = self.proj_out(self.norm_out(x))
    return s.reshape(b, x.shape[1], self.window, self.feature_dim)


class SpeechAE(nn.Module):
  """``(C, Ŝ) = model(S)``; ``encode`` / ``decode`` for one half. Fields as the JAX SpeechAE."""

  def __init__(self, feature_dim=384, window=10, hidden_dim=1024, latent_tokens=2, latent_dim=2048, kernel_size=3):
    super().__init__()
    if kernel_size < 2:
      raise ValueError(f"SpeechAE: kernel_size={kernel_size} must be ≥ 2 (the stride of the down blocks)")
    self.config = dict(feature_dim=feature_dim, window=window, hidden_dim=hidden_dim, latent_tokens=latent_tokens,
                       latent_dim=latent_dim, kernel_size=kernel_size)
    self.encoder = SpeechAEEncoder(**self.config)
    self.decoder = SpeechAEDecoder(**self.config)

  def encode(self, s):  # [B, F, Hw, DA] → [B, f, hw, dA]
    c = self.config
    if s.ndim != 4 or tuple(s.shape[2:]) != (c["window"], c["feature_dim"]):
      raise ValueError(f"SpeechAE.encode: S has shape {tuple(s.shape)}; expected [B, F, {c['window']}, "
                       f"{c['feature_dim']}]")
    if (s.shape[1] - 1) % FRAMES_PER_LATENT:
      raise ValueError(f"SpeechAE.encode: S has F={s.shape[1]} frames; F must be 1 + 8k")
    return self.encoder(s)

  def decode(self, c):  # [B, f, hw, dA] → [B, 1 + 8(f−1), Hw, DA]
    return self.decoder(c)

  def forward(self, s):
    c = self.encode(s)
    return c, self.decode(c)

  def save_exported(self, path: str) -> None:
    """Write ``config.json`` + ``model.safetensors`` as ``export_torch`` does (for ``import-torch``)."""
    from safetensors.torch import save_file
    os.makedirs(path, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
              os.path.join(path, WEIGHTS_NAME), metadata={"format": "pt"})
    with open(os.path.join(path, CONFIG_NAME), "w") as fh:
      json.dump({"_class_name": "SpeechAE", **self.config}, fh, indent=2)

  @classmethod
  def from_exported(cls, path: str) -> "SpeechAE":
    """Load ``config.json`` + ``model.safetensors`` written by ``export_torch`` (strict key check)."""
    from safetensors.torch import load_file
    config_path = os.path.join(path, CONFIG_NAME)
    if not os.path.isfile(config_path):
      raise FileNotFoundError(f"{path}: no {CONFIG_NAME} (not an exported SpeechAE directory)")
    with open(config_path) as fh:
      config = json.load(fh)
    model = cls(**{k: config[k] for k in CONFIG_FIELDS})
    model.load_state_dict(load_file(os.path.join(path, WEIGHTS_NAME)), strict=True)
    return model.eval()
