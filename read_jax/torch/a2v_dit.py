"""A2V-DiT in PyTorch: diffusers' ``LTXVideoTransformer3DModel`` plus the frame-level audio cross-attention.

The same math as :mod:`read_jax.models.a2v_dit` (paper Eq. 10): every block gains ``audio_attn``
(a diffusers ``LTXAttention`` with key/value width A: q/k/v projections, RMS QK-norm across heads,
``to_out.0``), applied after the text cross-attention and before the feed-forward, per latent frame:
the H·W tokens of latent frame k ≥ 1 attend only to that frame's S speech tokens C_k; the reference
frame 0 gets no audio update. Every LTX submodule is diffusers' own, under diffusers' names, so the
state dict is diffusers' plus ``transformer_blocks.{i}.audio_attn.*``.

Call (as the JAX model; per-frame timesteps become diffusers' per-token timesteps, one frame's tokens
sharing its t)::

  model = A2VDiT.from_exported(torch_dir)       # transformer/ + audio_attention/, load_state_dict(strict=True)
  v = model(x, t, speech, text, text_mask)
  x [B, T, H, W, C]; t [B, T] in [0, 1]; speech [B, T-1, S, A] or None; text [B, L, caption_channels];
  text_mask [B, L] (True = real token); v [B, T, H, W, out_channels]

As in the JAX model, a batch row whose text mask is all False gets no text update at all.
"""

from __future__ import annotations

import json
import os

import torch
from diffusers import LTXVideoTransformer3DModel
from diffusers.models.transformers.transformer_ltx import LTXAttention

from read_jax.files import safetensors_files

TRANSFORMER_DIR = "transformer"  # diffusers LTXVideoTransformer3DModel (the LTX part)
AUDIO_DIR = "audio_attention"  # config.json (read_jax A2V-DiT fields) + model.safetensors (audio_attn only)
AUDIO_WEIGHTS = "model.safetensors"
# diffusers' LTX RoPE is fixed to these; a model with other values cannot be expressed with it.
_DIFFUSERS_ROPE = {"rope_base": [20, 2048, 2048], "rope_theta": 10000.0}


class A2VDiT(LTXVideoTransformer3DModel):
  """diffusers' LTX transformer with ``transformer_blocks.{i}.audio_attn`` (see the module docstring).

  ``audio``: the read_jax fields the LTX config lacks: audio_dim (A), audio_tokens (S), fps and
  vae_scale (RoPE interpolation scale = (vae_t / fps, vae_h, vae_w)).
  """

  def __init__(self, ltx_config: dict, *, audio_dim: int, audio_tokens: int, fps: float, vae_scale):
    super().__init__(**{k: v for k, v in ltx_config.items() if not k.startswith("_")})
    c = self.config
    self.audio_dim, self.audio_tokens = audio_dim, audio_tokens
    self.rope_scale = (vae_scale[0] / fps, float(vae_scale[1]), float(vae_scale[2]))
    for block in self.transformer_blocks:
      block.audio_attn = LTXAttention(query_dim=c.num_attention_heads * c.attention_head_dim,
                                      heads=c.num_attention_heads, kv_heads=c.num_attention_heads,
                                      dim_head=c.attention_head_dim, bias=c.attention_bias,
                                      cross_attention_dim=audio_dim, out_bias=c.attention_out_bias,
                                      qk_norm=c.qk_norm)

  @classmethod
  def from_exported(cls, torch_dir: str) -> "A2VDiT":
    """Build from ``torch_dir/transformer`` and ``torch_dir/audio_attention``; every key checked (strict=True)."""
    from safetensors.torch import load_file
    ltx_dir, audio_dir = os.path.join(torch_dir, TRANSFORMER_DIR), os.path.join(torch_dir, AUDIO_DIR)
    for d in (ltx_dir, audio_dir):
      if not os.path.isfile(os.path.join(d, "config.json")):
        raise FileNotFoundError(f"{d}: no config.json (not an export_torch directory?)")
    with open(os.path.join(ltx_dir, "config.json")) as fh:
      ltx_config = json.load(fh)
    with open(os.path.join(audio_dir, "config.json")) as fh:
      ours = json.load(fh)["read_jax_config"]
    for key, value in _DIFFUSERS_ROPE.items():
      if ours[key] != value and ours[key] != tuple(value):
        raise ValueError(f"{audio_dir}/config.json: {key}={ours[key]} — diffusers' LTX RoPE only has {value}")
    model = cls(ltx_config, audio_dim=ours["audio_dim"], audio_tokens=ours["audio_tokens"], fps=ours["fps"],
                vae_scale=ours["vae_scale"])
    model.read_jax_config = ours  # written back by save_exported
    state = {}
    for f in safetensors_files(ltx_dir, "diffusion_pytorch_model"):
      state.update(load_file(f))
    state.update(load_file(os.path.join(audio_dir, AUDIO_WEIGHTS)))
    model.load_state_dict(state, strict=True)
    return model.eval()

  def save_exported(self, torch_dir: str) -> None:
    """Write ``transformer/`` and ``audio_attention/`` as ``export_torch`` does (e.g. after fine-tuning in
    PyTorch), for ``scripts/convert.py import-torch``. Only for a model built by :meth:`from_exported`."""
    from safetensors.torch import save_file
    if not hasattr(self, "read_jax_config"):
      raise ValueError("save_exported: build the model with A2VDiT.from_exported (it carries the read_jax config)")
    state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
    audio = {k: v for k, v in state.items() if ".audio_attn." in k}
    ltx_dir, audio_dir = os.path.join(torch_dir, TRANSFORMER_DIR), os.path.join(torch_dir, AUDIO_DIR)
    os.makedirs(ltx_dir, exist_ok=True)
    os.makedirs(audio_dir, exist_ok=True)
    save_file({k: v for k, v in state.items() if k not in audio},
              os.path.join(ltx_dir, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    save_file(audio, os.path.join(audio_dir, AUDIO_WEIGHTS), metadata={"format": "pt"})
    with open(os.path.join(ltx_dir, "config.json"), "w") as fh:
      json.dump({"_class_name": "LTXVideoTransformer3DModel", **{k: v for k, v in self.config.items()
                                                                 if not k.startswith("_")}}, fh, indent=2)
    with open(os.path.join(audio_dir, "config.json"), "w") as fh:
      json.dump({"_class_name": "A2VDiT", "read_jax_config": self.read_jax_config}, fh, indent=2)

  def forward(self, x, t, speech, text, text_mask=None):
    b, frames, height, width, channels = x.shape
    hw = height * width
    length = frames * hw
    dim = self.config.num_attention_heads * self.config.attention_head_dim
    if t.shape != (b, frames):
      raise ValueError(f"t must be per-frame [B, T] = {(b, frames)}, got {tuple(t.shape)}")
    if speech is not None and (speech.ndim != 4 or tuple(speech.shape[:2]) != (b, frames - 1)
                               or speech.shape[-1] != self.audio_dim):
      raise ValueError(f"speech must be [B, T-1, S, A] = [{b}, {frames - 1}, S, {self.audio_dim}], "
                       f"got {tuple(speech.shape)}")
    mask = torch.ones(text.shape[:2], dtype=torch.bool) if text_mask is None else text_mask.bool()
    has_text = mask.any(-1)  # [B]
    text_bias = ((~mask).to(x.dtype) * -10000.0)[:, None]  # [B, 1, L]: diffusers' additive mask
    h = self.proj_in(x.reshape(b, length, channels))  # [B, L, D]
    rope = self.rope(h, frames, height, width, self.rope_scale)
    # The timestep MLP is per token in diffusers; one frame's tokens share t, so embed per frame: same values.
    temb, emb = self.time_embed((t * 1000.0).flatten(), batch_size=b, hidden_dtype=h.dtype)
    temb, emb = temb.view(b, frames, 1, -1), emb.view(b, frames, 1, dim)  # broadcast over a frame's H·W tokens
    states = self.caption_projection(text).view(text.shape[0], -1, dim).expand(b, -1, -1)
    for block in self.transformer_blocks:
      h = _block(block, h, states, temb, rope, text_bias, has_text, speech, frames)
    ada = self.scale_shift_table[None, None, :, None] + emb[:, :, None]  # [B, T, 2, 1, D]
    shift, scale = ada[:, :, 0], ada[:, :, 1]
    hn = self.norm_out(h).view(b, frames, hw, dim) * (1 + scale) + shift
    return self.proj_out(hn).view(b, frames, height, width, -1)


def _block(block, h, states, temb, rope, text_bias, has_text, speech, frames):
  """One A2V-DiT block: diffusers' block order with the audio cross-attention (Eq. 10) before the FF."""
  b, length, dim = h.shape
  per_frame = lambda a: a.view(b, frames, length // frames, dim)  # noqa: E731  [B, T, H·W, D]
  ada = block.scale_shift_table[None, None, :, None] + temb.view(b, frames, 6, 1, dim)  # [B, T, 6, 1, D]
  shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = ada.unbind(2)
  n = (per_frame(block.norm1(h)) * (1 + scale_msa) + shift_msa).view(b, length, dim)
  h = h + (per_frame(block.attn1(n, image_rotary_emb=rope)) * gate_msa).view(b, length, dim)
  text_out = block.attn2(h, encoder_hidden_states=states, attention_mask=text_bias)
  h = h + torch.where(has_text[:, None, None], text_out, torch.zeros_like(text_out))
  if speech is not None:  # frame k ≥ 1 attends to C_k only; frame 0 (z_R) untouched
    hf = per_frame(h)
    f, s = frames - 1, speech.shape[2]
    q_in = hf[:, 1:].reshape(b * f, -1, dim)  # [B·f, H·W, D]
    a = block.audio_attn(q_in, encoder_hidden_states=speech.reshape(b * f, s, -1).to(h.dtype))
    h = torch.cat([hf[:, :1], hf[:, 1:] + a.view(b, f, -1, dim)], dim=1).view(b, length, dim)
  n = (per_frame(block.norm2(h)) * (1 + scale_mlp) + shift_mlp).view(b, length, dim)
  return h + (per_frame(block.ff(n)) * gate_mlp).view(b, length, dim)
