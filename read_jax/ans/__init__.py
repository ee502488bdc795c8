"""The Asynchronous Noise Scheduler (§3.3): the forward (training) noising process and the reverse sampler.

``training`` (Eq. 11–15) and ``sampling`` (Algorithm 1, Eq. 16–17) are two modules of one package
rather than one ``ans.py``: each is a few hundred lines with its own tests.
"""

from read_jax.ans.sampling import (
    CFG_MODES,
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
    noise_latents,
    sample_pair,
    training_example,
    zero_where,
)

__all__ = [
    "ANSConfig", "CFG_MODES", "flow_matching_loss", "frame_timesteps", "noise_latents", "num_clips",
    "padded_frames", "sample", "sample_pair", "stream", "stream_clips", "timesteps", "training_example",
    "zero_where",
]
