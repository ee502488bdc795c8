"""The ANS forward (training) process: asynchronous per-frame noising for flow matching (§3.3, Eq. 11–15).

Sequence ``[z_R, z_1, …, z_f]`` (reference frame first, Eq. 11), one timestep per frame:

  * t1, t2 from the shifted logit-normal t = sigmoid(n), n ~ N(μ = 2.05, σ = 1) (Eq. 12, App. C.3),
    drawn as two independent samples and sorted, so t1 ≤ t2 (equal with probability zero);
  * motion prior dropout (App. C.3): with probability p_sync = 0.5 the timesteps are
    [0, t2, t2, …, t2] (synchronous), otherwise [0, t1, t2, …, t2] (z_1 is the motion frame, less noisy);
  * Z(t) = (1 − t)·Z(0) + t·ε per frame (Eq. 13), target v = ε − Z(0) (Eq. 14); the reference
    frame has t = 0, so it stays clean, and it is not a target: the loss (Eq. 15) is the MSE over
    frames 1 … f only;
  * identity dropout (zero z_R) and audio dropout (zero the speech condition C), 0.1 each,
    drawn independently per example;
  * rolling-window patterns (a switch, ``p_rolling`` > 0; off in the paper's configs): with probability
    ``p_rolling`` an example has the timesteps the rolling sampler (:mod:`read_jax.ans.rolling`) produces,
    [0, 0 × c, τ_0, …, τ_{W−1}]: c = f − W clean context frames (the motion prior, not targets, so outside
    the loss) and W noisy frames at evenly spaced levels τ_w = (w + φ)/W, oldest first, φ = sigmoid(n)
    as above and W drawn uniformly from ``rolling_noisy``. W = 1 is one new frame after f − 1 clean ones.

Everything is a pure function of (key, arrays); batch examples draw independent values from one key.

Note on the paper's wording: App. C.3 describes the asynchronous case as "lower-SNR noise for
motion frames", while Eq. 12 (t1 < t2, t1 on the motion frame) gives the motion frame *less* noise,
i.e. higher SNR. We follow Eq. 12 and Algorithm 1 (the motion frame is one step less noisy).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ANSConfig:
  """Forward-process constants (App. C.3); frozen, so it can be a static argument of ``jax.jit``."""

  mu: float = 2.05  # mean of n in t = sigmoid(n)
  sigma: float = 1.0  # standard deviation of n
  p_sync: float = 0.5  # motion prior dropout: probability of synchronous timesteps [0, t2, …, t2]
  p_drop_identity: float = 0.1  # probability of zeroing the reference latent z_R
  p_drop_audio: float = 0.1  # probability of zeroing the speech condition
  p_rolling: float = 0.0  # probability of a rolling-window pattern [0, 0 × c, τ_0 … τ_{W−1}] (module docstring)
  rolling_noisy: tuple = (1, 2)  # the noisy-frame counts W a rolling pattern draws from (uniformly)

  def __post_init__(self):
    if not self.sigma > 0:
      raise ValueError(f"ANSConfig: sigma={self.sigma} must be > 0")
    object.__setattr__(self, "rolling_noisy", tuple(int(w) for w in self.rolling_noisy))
    if not self.rolling_noisy or min(self.rolling_noisy) < 1:
      raise ValueError(f"ANSConfig: rolling_noisy={self.rolling_noisy} must be noisy-frame counts ≥ 1")
    for name in ("p_sync", "p_drop_identity", "p_drop_audio", "p_rolling"):
      p = getattr(self, name)
      if not 0.0 <= p <= 1.0:
        raise ValueError(f"ANSConfig: {name}={p} must be a probability in [0, 1]")


def sample_pair(key, shape, mu: float = 2.05, sigma: float = 1.0):
  """Two shifted-logit-normal timesteps (t1, t2) of ``shape``, t1 ≤ t2 (Eq. 12).

  Two independent draws of sigmoid(N(μ, σ)), sorted: t1 is their minimum, t2 their maximum. So
  the pooled values {t1, t2} are distributed exactly as sigmoid(N(μ, σ)); t2 alone is the max of two.
  """
  shape = tuple(shape)
  n = mu + sigma * jax.random.normal(key, shape + (2,), jnp.float32)
  t = jnp.sort(jax.nn.sigmoid(n), axis=-1)
  return t[..., 0], t[..., 1]


def frame_timesteps(key, batch: int, num_frames: int, cfg: ANSConfig = ANSConfig()):
  """Per-frame timesteps ``t [B, T]`` for ``[z_R, z_1, …, z_f]`` (T = 1 + f), ``is_sync [B]`` and ``context [B, T]``.

  ANS examples: t[:, 0] = 0 (clean reference), t[:, 2:] = t2, t[:, 1] = t2 where ``is_sync`` else t1.
  Rolling examples (probability ``cfg.p_rolling``): :func:`rolling_timesteps`; ``context`` marks their clean
  context frames (all False in ANS examples), which are not targets.
  """
  if num_frames < 2:
    raise ValueError(f"frame_timesteps: num_frames={num_frames}; need the reference frame plus ≥ 1 latent frame")
  key_t, key_sync = jax.random.split(key)  # (the draws of configs without rolling patterns stay as they were)
  t1, t2 = sample_pair(key_t, (batch,), cfg.mu, cfg.sigma)  # [B], [B]
  is_sync = jax.random.bernoulli(key_sync, cfg.p_sync, (batch,))  # [B]
  motion = jnp.where(is_sync, t2, t1)  # [B]: z_1's timestep
  t = jnp.concatenate([jnp.zeros((batch, 1), jnp.float32), motion[:, None],
                       jnp.broadcast_to(t2[:, None], (batch, num_frames - 2))], axis=1)  # [B, T]
  context = jnp.zeros((batch, num_frames), bool)
  if cfg.p_rolling > 0:
    key_roll, key_which = jax.random.split(jax.random.fold_in(key, 1))
    t_roll, ctx_roll = rolling_timesteps(key_roll, batch, num_frames, cfg)
    rolling = jax.random.bernoulli(key_which, cfg.p_rolling, (batch,))[:, None]  # [B, 1]
    t, context = jnp.where(rolling, t_roll, t), rolling & ctx_roll
    is_sync = is_sync & ~rolling[:, 0]
  return t, is_sync, context


def rolling_timesteps(key, batch: int, num_frames: int, cfg: ANSConfig = ANSConfig()):
  """The rolling sampler's patterns: ``t [B, T]`` = [0, 0 × c, τ_0 … τ_{W−1}] and ``context [B, T]`` (the c frames).

  τ_w = (w + φ)/W (w = 0 the oldest noisy frame), φ = sigmoid(N(μ, σ)) ∈ (0, 1), W uniform over
  ``cfg.rolling_noisy`` (capped at f). These are exactly the times :mod:`read_jax.ans.rolling` gives a window
  in the middle of an advance, φ = 1 − s/S at substep s (with the schedule's shift 1).
  """
  key_w, key_phi = jax.random.split(key)
  f = num_frames - 1
  choices = jnp.asarray([min(w, f) for w in cfg.rolling_noisy], jnp.int32)
  w_count = jax.random.choice(key_w, choices, (batch,))  # [B]: W
  phi = jax.nn.sigmoid(cfg.mu + cfg.sigma * jax.random.normal(key_phi, (batch,), jnp.float32))  # [B]
  frame = jnp.arange(1, num_frames)[None]  # [1, f]: latent frames 1 … f
  w = frame - (f - w_count[:, None]) - 1  # [B, f]: noisy index, < 0 on the context frames
  tau = (w.astype(jnp.float32) + phi[:, None]) / w_count[:, None].astype(jnp.float32)
  t = jnp.concatenate([jnp.zeros((batch, 1), jnp.float32), jnp.where(w >= 0, tau, 0.0)], axis=1)  # [B, T]
  context = jnp.concatenate([jnp.zeros((batch, 1), bool), w < 0], axis=1)
  return t, context


def noise_latents(key, z0, t):
  """Z(t) = (1 − t)·Z(0) + t·ε (Eq. 13) and v = ε − Z(0) (Eq. 14), t broadcast per frame.

  z0 ``[B, T, ...]`` (e.g. [B, T, H, W, C]), t ``[B, T]``. Computed in float32; zt is returned in
  z0's dtype, v in float32. Where t = 0 (the reference frame) zt equals z0 exactly.
  """
  if t.shape != z0.shape[:2]:
    raise ValueError(f"noise_latents: t has shape {tuple(t.shape)}; expected [B, T] = {tuple(z0.shape[:2])}")
  z = z0.astype(jnp.float32)
  eps = jax.random.normal(key, z.shape, jnp.float32)
  tb = t.astype(jnp.float32).reshape(t.shape + (1,) * (z.ndim - 2))  # [B, T, 1, …]
  zt = (1.0 - tb) * z + tb * eps
  return zt.astype(z0.dtype), eps - z


def zero_where(x, flag):
  """x with the examples where ``flag [B]`` is True set to zero (condition dropout)."""
  return jnp.where(flag.reshape(flag.shape + (1,) * (x.ndim - 1)), jnp.zeros_like(x), x)


def training_example(key, latents, speech=None, cfg: ANSConfig = ANSConfig()):
  """One noised training batch from clean latents ``[B, T, H, W, C]`` = [z_R, z_1 … z_f] on axis 1.

  ``speech`` is the speech condition for the A2V-DiT, C ``[B, f, hw, dA]`` (any shape with batch
  first works). When the SpeechAE runs inside the loss (joint fine-tuning) pass ``speech=None`` and
  apply ``zero_where(C, out["drop_audio"])`` to its output: audio dropout zeroes C, not S.

  Returns a dict:
    x            [B, T, H, W, C]  Z(t), with z_R zeroed where ``drop_identity``
    t            [B, T]           per-frame timesteps, t[:, 0] = 0
    speech       as given, zeroed where ``drop_audio`` (None if None was given)
    target       [B, T, H, W, C]  v = ε − Z(0), float32 (row 0 is not a target)
    loss_mask    [B, T]           0 for the reference frame (and a rolling pattern's context), else 1
    is_sync, drop_identity, drop_audio, is_rolling   [B] booleans
  """
  if latents.ndim < 3:
    raise ValueError(f"training_example: latents has shape {tuple(latents.shape)}; expected [B, T, ...] "
                     "with the reference frame at T index 0")
  b, num_frames = latents.shape[:2]
  if speech is not None and speech.shape[0] != b:
    raise ValueError(f"training_example: speech batch {speech.shape[0]} differs from latents batch {b}")
  key_t, key_noise, key_id, key_audio = jax.random.split(key, 4)
  t, is_sync, context = frame_timesteps(key_t, b, num_frames, cfg)
  zt, v = noise_latents(key_noise, latents, t)
  drop_identity = jax.random.bernoulli(key_id, cfg.p_drop_identity, (b,))  # [B]
  drop_audio = jax.random.bernoulli(key_audio, cfg.p_drop_audio, (b,))  # [B]
  x = zt.at[:, 0].set(zero_where(zt[:, 0], drop_identity))  # identity dropout: zero z_R
  loss_mask = ((jnp.arange(num_frames) > 0)[None] & ~context).astype(jnp.float32)  # [B, T]
  return dict(x=x, t=t, speech=None if speech is None else zero_where(speech, drop_audio), target=v,
              loss_mask=loss_mask, is_sync=is_sync, drop_identity=drop_identity, drop_audio=drop_audio,
              is_rolling=context.any(axis=1))


def flow_matching_loss(v_pred, target, loss_mask):
  """Eq. 15: mean squared error between v̂ and v over the frames where ``loss_mask [B, T]`` is 1, in float32.

  The mean is over every element of the kept frames (so the reference frame's prediction has no
  effect at all, not even on the normalisation). The one masked loss: stage 2 masks the reference frame (and a
  rolling pattern's context), the distillation the frames a clip does not own.
  """
  if v_pred.shape != target.shape or loss_mask.shape != target.shape[:2]:
    raise ValueError(f"flow_matching_loss: v_pred {tuple(v_pred.shape)}, target {tuple(target.shape)} and "
                     f"loss_mask {tuple(loss_mask.shape)} must be [B, T, ...], [B, T, ...] and [B, T]")
  err = jnp.square(v_pred.astype(jnp.float32) - target.astype(jnp.float32))  # [B, T, ...]
  per_frame = jnp.mean(err.reshape(err.shape[:2] + (-1,)), axis=-1)  # [B, T]
  mask = loss_mask.astype(jnp.float32)
  return jnp.sum(per_frame * mask) / jnp.maximum(jnp.sum(mask), 1.0)
