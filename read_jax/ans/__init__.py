"""The Asynchronous Noise Scheduler (§3.3): the forward (training) noising process and the reverse samplers.

  training   the forward process (Eq. 11–15) and the one masked loss
  solvers    the sampler core: schedule, solver steps on per-frame times (Euler, Heun), the Sampler value
  guidance   Joint / Split CFG (Eq. 16–17), one implementation for sampling and distillation
  sampling   Algorithm 1, clip by clip
  rolling    the rolling window (one latent frame in, one out)
  causal     the causal window: a block-causal denoiser with a per-session KV cache
  distill    the distillation targets (guidance, progressive)
"""

from read_jax.ans.guidance import CFG_MODES, DEFAULT_GUIDANCE, clip_velocity, guided_velocity
from read_jax.ans.sampling import num_clips, padded_frames, stream, stream_clips
from read_jax.ans.solvers import DEFAULT_STEPS, SOLVERS, Sampler, timesteps
from read_jax.ans.training import (
    ANSConfig,
    flow_matching_loss,
    frame_timesteps,
    noise_latents,
    rolling_timesteps,
    sample_pair,
    training_example,
    zero_where,
)

__all__ = [
    "ANSConfig", "CFG_MODES", "DEFAULT_GUIDANCE", "DEFAULT_STEPS", "SOLVERS", "Sampler", "clip_velocity",
    "flow_matching_loss", "frame_timesteps", "guided_velocity", "noise_latents", "num_clips", "padded_frames",
    "rolling_timesteps", "sample_pair", "stream", "stream_clips", "timesteps", "training_example", "zero_where",
]
