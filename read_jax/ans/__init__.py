"""The Asynchronous Noise Scheduler (§3.3): the forward (training) noising process and the reverse sampler.

``training`` (Eq. 11–15), ``sampling`` (Algorithm 1) and ``guidance`` (Split / Joint CFG, Eq. 16–17)
are modules of one package, each with its own tests.
"""

from read_jax.ans.guidance import CFG_MODES, DEFAULT_GUIDANCE, guided_velocity
from read_jax.ans.sampling import (
    num_clips,
    padded_frames,
    sample,
    stream,
    stream_clips,
    timesteps,
)
from read_jax.ans.training import (
    ANSConfig,
    flow_matching_loss,
    frame_timesteps,
    rolling_timesteps,
    noise_latents,
    sample_pair,
    training_example,
    zero_where,
)

__all__ = [
    "ANSConfig", "CFG_MODES", "DEFAULT_GUIDANCE", "guided_velocity", "flow_matching_loss", "frame_timesteps", "noise_latents", "rolling_timesteps", "num_clips",
    "padded_frames", "sample", "sample_pair", "stream", "stream_clips", "timesteps", "training_example",
    "zero_where",
]
