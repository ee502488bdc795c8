"""SpeechAE: temporal compression of Whisper speech windows to the VAE's latent frame rate (§3.2, App. B.1).

``C = E_A(S)``, ``Ŝ = D_A(C)`` (Eq. 6) with S [B, F, Hw, DA] = [B, F, 10, 384] (one 10-frame Whisper
window per video frame) and C [B, f, hw, dA] = [B, f, 2, 2048], f = (F − 1)//8 + 1, for F = 1 + 8k:
the same 8× temporal compression as the causal video VAE, so speech latent k lines up with video
latent k (the A2V-DiT's frame-level audio cross-attention, Eq. 10, relies on that).

Architecture (the paper gives the block types, not the sizes; ``hidden_dim`` = 1024 and
``kernel_size`` = 3 are our choices):

  encoder  per-frame Linear(Hw·DA → D) ``proj_in``
           first frame replicated 8× in front of frames 2..F (8k frames) → 8·f frames
           3 × [RMSNorm → CausalConv1D(D → D, K, stride 2) → SiLU]  ``down_blocks_{0,1,2}``  (×8 in time)
           RMSNorm ``norm_out`` → Linear(D → hw·dA) ``proj_out`` → reshape [f, hw, dA]
  decoder  Linear(hw·dA → D) ``proj_in``
           3 × [RMSNorm → CausalConv1D(D → 2D, K, stride 1) → SiLU → depth-to-space ×2 in time]  ``up_blocks``
           drop the first 7 of the 8·f frames (the mirror of the replication) → F frames
           RMSNorm ``norm_out`` → Linear(D → Hw·DA) ``proj_out`` → reshape [F, Hw, DA]

First frame, as in the LTX causal VAE (which pads the first frame by replicating it): frame 0 is
repeated to fill a whole 8-frame group, so latent 0 is a function of frame 0 alone; frames
1 + 8(k−1) … 8k (0-based) form group k. Causality, precisely: with the causal convolutions of
``read_jax.nn.causal_conv1d`` (output m reads inputs ≤ s·(m+1) − 1), latent k (0-based) depends
on frames 0 … 8k only — latent 0 on frame 0 alone — and on no later frame. The decoder is causal
in the same sense: reconstructed frame i depends on latents 0 … ceil(i/8) only (frame 0 on latent
0 alone). Both are tested by perturbation.

Depth-to-space: the 2D channels of an up block's conv output at time m are [frame 2m | frame 2m+1].

Loss (Eq. 7–9): ``speech_ae_loss``.

Parameter names follow the torch-module path convention of ``read_jax.convert.torch_layout``
(e.g. ``encoder.down_blocks.0.conv.conv.weight``), so ``flax_to_torch(params)`` needs no key table.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from read_jax.nn.causal_conv1d import CausalConv1D
from read_jax.constants import FRAMES_PER_LATENT
from read_jax.nn.norms import RMSNorm

_NUM_BLOCKS = 3  # stride-2 down (and ×2 up) blocks: 2 ** 3 = FRAMES_PER_LATENT, as the video VAE
_NORM_EPS = 1e-6


def num_latents(num_frames: int) -> int:
  """f = (F − 1)//8 + 1 for F = 1 + 8k; a ValueError naming the nearest valid F otherwise."""
  if num_frames < 1 or (num_frames - 1) % FRAMES_PER_LATENT:
    lo = max(1, (num_frames - 1) // FRAMES_PER_LATENT * FRAMES_PER_LATENT + 1)
    hi = lo + FRAMES_PER_LATENT if num_frames > lo else lo
    raise ValueError(f"SpeechAE: S has F={num_frames} frames; F must be 1 + 8k (1, 9, 17, ...), "
                     f"e.g. F={lo}" + (f" or F={hi}" if hi != lo else ""))
  return (num_frames - 1) // FRAMES_PER_LATENT + 1


class DownBlock(nn.Module):
  """RMSNorm → causal conv stride 2 → SiLU: [B, L, D] → [B, L/2, D]."""

  features: int  # D
  kernel_size: int  # causal conv taps
  dtype: jnp.dtype | None = None  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):  # [B, L, D]
    h = RMSNorm(_NORM_EPS, param_dtype=self.param_dtype, name="norm")(x)
    h = CausalConv1D(self.features, self.kernel_size, stride=2, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="conv")(h)
    return nn.silu(h)  # [B, L/2, D]


class UpBlock(nn.Module):
  """RMSNorm → causal conv (D → 2D) → SiLU → depth-to-space: [B, L, D] → [B, 2L, D].

  Output frames 2m and 2m+1 depend on inputs ≤ m only (the conv is causal, stride 1).
  """

  features: int  # D
  kernel_size: int  # causal conv taps
  dtype: jnp.dtype | None = None  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, x):  # [B, L, D]
    h = RMSNorm(_NORM_EPS, param_dtype=self.param_dtype, name="norm")(x)
    h = CausalConv1D(2 * self.features, self.kernel_size, stride=1, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="conv")(h)  # [B, L, 2D]
    h = nn.silu(h)
    b, length, _ = h.shape
    return h.reshape(b, 2 * length, self.features)  # [B, 2L, D]: channels [even frame | odd frame]


class SpeechAEEncoder(nn.Module):
  """E_A (Eq. 6): S [B, F, Hw, DA] → C [B, f, hw, dA]."""

  feature_dim: int  # DA
  window: int  # Hw
  hidden_dim: int  # D
  latent_tokens: int  # hw
  latent_dim: int  # dA
  kernel_size: int  # causal conv taps
  dtype: jnp.dtype | None = None  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, s):  # [B, F, Hw, DA]
    b, num_frames = s.shape[:2]
    f = num_latents(num_frames)
    x = s.reshape(b, num_frames, self.window * self.feature_dim)  # [B, F, Hw·DA]
    x = nn.Dense(self.hidden_dim, dtype=self.dtype, param_dtype=self.param_dtype, name="proj_in")(x)  # [B, F, D]
    # Frame 0 fills its own 8-frame group, so latent 0 sees frame 0 only (like the VAE's first frame).
    x = jnp.concatenate([jnp.repeat(x[:, :1], FRAMES_PER_LATENT, axis=1), x[:, 1:]], axis=1)  # [B, 8f, D]
    for i in range(_NUM_BLOCKS):
      x = DownBlock(self.hidden_dim, self.kernel_size, self.dtype, self.param_dtype, name=f"down_blocks_{i}")(x)
    x = RMSNorm(_NORM_EPS, param_dtype=self.param_dtype, name="norm_out")(x)  # [B, f, D]
    c = nn.Dense(self.latent_tokens * self.latent_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                 name="proj_out")(x)  # [B, f, hw·dA]
    return c.reshape(b, f, self.latent_tokens, self.latent_dim)  # [B, f, hw, dA]


class SpeechAEDecoder(nn.Module):
  """D_A (Eq. 6): C [B, f, hw, dA] → Ŝ [B, F, Hw, DA], F = 1 + 8(f − 1)."""

  feature_dim: int  # DA
  window: int  # Hw
  hidden_dim: int  # D
  latent_tokens: int  # hw
  latent_dim: int  # dA
  kernel_size: int  # causal conv taps
  dtype: jnp.dtype | None = None  # compute dtype
  param_dtype: jnp.dtype = jnp.float32  # storage dtype

  @nn.compact
  def __call__(self, c):  # [B, f, hw, dA]
    b, f = c.shape[:2]
    x = c.reshape(b, f, self.latent_tokens * self.latent_dim)  # [B, f, hw·dA]
    x = nn.Dense(self.hidden_dim, dtype=self.dtype, param_dtype=self.param_dtype, name="proj_in")(x)  # [B, f, D]
    for i in range(_NUM_BLOCKS):
      x = UpBlock(self.hidden_dim, self.kernel_size, self.dtype, self.param_dtype, name=f"up_blocks_{i}")(x)
    # [B, 8f, D]: group 0 is latent 0's 8 frames; keep its last one as frame 0 (mirror of the replication).
    x = x[:, FRAMES_PER_LATENT - 1:]  # [B, F, D]
    x = RMSNorm(_NORM_EPS, param_dtype=self.param_dtype, name="norm_out")(x)
    s = nn.Dense(self.window * self.feature_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                 name="proj_out")(x)  # [B, F, Hw·DA]
    return s.reshape(b, x.shape[1], self.window, self.feature_dim)  # [B, F, Hw, DA]


class SpeechAE(nn.Module):
  """Speech autoencoder: ``(C, Ŝ) = model.apply(variables, S)``; ``method="encode"`` / ``"decode"`` for one half.

  The defaults are the paper's full size (DA = 384, Hw = 10, hw = 2, dA = 2048, ×8 in time) with our
  D = 1024 and K = 3 (the paper states neither).
  """

  feature_dim: int = 384  # DA: Whisper-tiny hidden width
  window: int = 10  # Hw: Whisper frames per video frame
  hidden_dim: int = 1024  # D: width between proj_in and proj_out (our choice; not in the paper)
  latent_tokens: int = 2  # hw: speech tokens per latent frame
  latent_dim: int = 2048  # dA: width of a speech token (= the A2V-DiT width)
  kernel_size: int = 3  # causal conv taps (our choice; ≥ 2 so stride-2 convs read every frame)
  dtype: jnp.dtype | None = None  # compute dtype (None: float32 from the inputs); norms stay float32
  param_dtype: jnp.dtype = jnp.float32  # storage dtype of every parameter

  def setup(self):
    if self.kernel_size < 2:
      raise ValueError(f"SpeechAE: kernel_size={self.kernel_size} must be ≥ 2 (the stride of the down blocks)")
    dims = dict(feature_dim=self.feature_dim, window=self.window, hidden_dim=self.hidden_dim,
                latent_tokens=self.latent_tokens, latent_dim=self.latent_dim, kernel_size=self.kernel_size,
                dtype=self.dtype, param_dtype=self.param_dtype)
    self.encoder = SpeechAEEncoder(**dims)
    self.decoder = SpeechAEDecoder(**dims)

  def encode(self, S):  # [B, F, Hw, DA] → [B, f, hw, dA]
    expected = (self.window, self.feature_dim)
    if S.ndim != 4 or tuple(S.shape[2:]) != expected:
      raise ValueError(f"SpeechAE.encode: S has shape {tuple(S.shape)}; expected [B, F, {expected[0]}, {expected[1]}]")
    num_latents(S.shape[1])
    return self.encoder(S)

  def decode(self, C):  # [B, f, hw, dA] → [B, 1 + 8(f−1), Hw, DA]
    expected = (self.latent_tokens, self.latent_dim)
    if C.ndim != 4 or tuple(C.shape[2:]) != expected or C.shape[1] < 1:
      raise ValueError(f"SpeechAE.decode: C has shape {tuple(C.shape)}; expected [B, f ≥ 1, {expected[0]}, {expected[1]}]")
    return self.decoder(C)

  def __call__(self, S):  # [B, F, Hw, DA] → (C [B, f, hw, dA], Ŝ [B, F, Hw, DA])
    C = self.encode(S)
    return C, self.decode(C)


def speech_ae_loss(S, S_hat, *, alpha: float = 10.0, beta: float = 1.0, temperature: float = 0.1):
  """L_SpeechAE = α·L_MSE + β·L_CON (Eq. 9), in float32; returns ``(loss, {"mse", "contrastive"})``.

  L_MSE (Eq. 7 writes ||S − Ŝ||²): the *mean* of the squared error over all elements, so that
  α = 10 keeps its meaning whatever the batch, clip length or feature size.

  L_CON (Eq. 8), per example over its F frames, exactly as written: with ŝ_i, s_j the flattened
  windows (Hw·DA values), l_ij = cos(ŝ_i, s_j)/τ and
      loss_i = −log( exp(l_ii) / Σ_{j≠i} exp(l_ij) ) = logsumexp_{j≠i} l_ij − l_ii,
  averaged over frames and batch. The denominator leaves out j = i (unlike InfoNCE), so the loss
  can go below zero; it needs F ≥ 2 (a single frame has no negatives). τ is not given in the paper;
  0.1 is our default.
  """
  if S.shape != S_hat.shape or S.ndim != 4:
    raise ValueError(f"speech_ae_loss: S {tuple(S.shape)} and S_hat {tuple(S_hat.shape)} must both be [B, F, Hw, DA]")
  b, num_frames = S.shape[:2]
  if num_frames < 2:
    raise ValueError(f"speech_ae_loss: F={num_frames}; the contrastive loss (Eq. 8) needs F ≥ 2 frames")
  if temperature <= 0:
    raise ValueError(f"speech_ae_loss: temperature={temperature} must be > 0")
  s = S.astype(jnp.float32).reshape(b, num_frames, -1)  # [B, F, Hw·DA]
  s_hat = S_hat.astype(jnp.float32).reshape(b, num_frames, -1)
  mse = jnp.mean(jnp.square(s - s_hat))  # Eq. 7, mean-normalised

  def unit(x):  # x / ||x||, with ||x|| floored at 1e-8 like torch's cosine_similarity
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), 1e-16))

  logits = jnp.einsum("bid,bjd->bij", unit(s_hat), unit(s), precision=jax.lax.Precision.HIGHEST)
  logits = logits / temperature  # [B, F, F]: l_ij = sim(ŝ_i, s_j)/τ
  positive = jnp.diagonal(logits, axis1=1, axis2=2)  # [B, F]: l_ii
  off_diagonal = ~jnp.eye(num_frames, dtype=bool)
  negatives = jax.nn.logsumexp(jnp.where(off_diagonal, logits, -jnp.inf), axis=-1)  # [B, F]: log Σ_{j≠i}
  contrastive = jnp.mean(negatives - positive)  # Eq. 8, then the batch mean
  loss = alpha * mse + beta * contrastive  # Eq. 9
  return loss, {"mse": mse, "contrastive": contrastive}


def latent_stats(model: SpeechAE, params, speech_clips) -> dict[str, np.ndarray]:
  """Mean and std of each latent element (token, channel) [hw, dA] over the latent frames of
  ``speech_clips`` (iterable of Whisper windows [F, Hw, DA], F = 1 + 8k), for ``standardize_latents``."""
  encode = jax.jit(lambda p, s: model.apply({"params": p}, s, method=SpeechAE.encode))
  total, total_sq, count = 0.0, 0.0, 0
  for s in speech_clips:
    c = np.asarray(encode(params, jnp.asarray(s, jnp.float32)[None])[0], np.float64)  # [f, hw, dA]
    total, total_sq, count = total + c.sum(0), total_sq + np.square(c).sum(0), count + c.shape[0]
  if not count:
    raise ValueError("speech_ae.latent_stats: no speech clip given")
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
  return {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}


def standardize_latents(params, mean, std, *, min_std_fraction: float = 1e-3):
  """SpeechAE params whose latents are ``(C − mean) / std``, the decoder undoing it: the same Ŝ.

  Nothing in Eq. 9 fixes the latents' offset or scale, so stage 2's audio attention would get inputs
  of whatever scale stage 1 ended with; standardised, they are on the scale of the VAE's normalised
  latents. The latent sits between two linear maps (the encoder's ``proj_out``, the decoder's ``proj_in``),
  so the change is folded into their weights, exact up to float rounding: no new parameter, and the
  module, its checkpoints and its PyTorch export stay as they are. ``mean``/``std`` [hw, dA]
  (``latent_stats``); a std below ``min_std_fraction`` of the largest is raised to that floor, so a
  constant element is centred, not blown up.
  """
  mean = np.asarray(mean, np.float64).reshape(-1)
  std = np.asarray(std, np.float64).reshape(-1)
  enc, dec = params["encoder"]["proj_out"], params["decoder"]["proj_in"]
  if mean.shape != enc["bias"].shape or std.shape != mean.shape:
    raise ValueError(f"standardize_latents: mean/std hold {mean.size}/{std.size} values; the latent has "
                     f"{enc['bias'].size} (hw·dA)")
  if not (np.isfinite(mean).all() and np.isfinite(std).all()) or std.max() <= 0:
    raise ValueError("standardize_latents: mean/std must be finite with a positive std")
  std = np.maximum(std, min_std_fraction * std.max())
  w_e, b_e = np.asarray(enc["kernel"], np.float64), np.asarray(enc["bias"], np.float64)  # [D, L], [L]
  w_d, b_d = np.asarray(dec["kernel"], np.float64), np.asarray(dec["bias"], np.float64)  # [L, D], [D]
  as_dtype = lambda x, like: jnp.asarray(x, like.dtype)  # noqa: E731
  new_enc = {"kernel": as_dtype(w_e / std, enc["kernel"]), "bias": as_dtype((b_e - mean) / std, enc["bias"])}
  new_dec = {"kernel": as_dtype(w_d * std[:, None], dec["kernel"]), "bias": as_dtype(b_d + mean @ w_d, dec["bias"])}
  return {**params, "encoder": {**params["encoder"], "proj_out": new_enc},
          "decoder": {**params["decoder"], "proj_in": new_dec}}
