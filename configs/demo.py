"""A whole small READ model: every part's config in one place (the demo model, pipeline tests, bench sample).

  configs/demo.py          the demo model's sizes: 64² frames (2×2 latents), clips of 16 latent frames
  configs/demo.py:tiny     random-weight smoke size: clips of 3 latent frames, 2 sampling steps

Sections: ``vae`` (configs/vae_ltx.py keys), ``whisper`` (configs/whisper.py keys), ``speech_ae``
(SpeechAE fields), ``dit`` (A2VDiT fields), ``pipeline`` (read_jax.pipeline.PipelineConfig fields).
``ReadPipeline.from_config(key, config)`` builds it with fresh weights.
"""

import importlib.util
import os

import ml_collections

from read_jax.config import parse_arg

_HERE = os.path.dirname(os.path.abspath(__file__))


def _sibling(name, arg):
  spec = importlib.util.spec_from_file_location(f"_demo_{name}", os.path.join(_HERE, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def get_config(arg=None):
  arg = parse_arg(arg, tiny=False)
  c = ml_collections.ConfigDict()
  c.vae = _sibling("vae_ltx", "tiny")  # LTX architecture, 32× space / 8× time, 8 latent channels
  c.whisper = _sibling("whisper", "test")  # 24-wide, 2 layers, 1 s windows
  c.dit = _sibling("a2v_dit", "tiny").model  # 2 blocks, 2 heads × 8, 8 channels in/out
  c.speech_ae = ml_collections.ConfigDict(dict(
      feature_dim=c.whisper.d_model,  # DA = the Whisper width
      window=10,  # Hw (fixed by the per-frame windows)
      hidden_dim=16,  # SpeechAE width
      latent_tokens=c.dit.audio_tokens,  # hw
      latent_dim=c.dit.audio_dim,  # dA
      kernel_size=3,  # causal conv taps
  ))
  c.pipeline = ml_collections.ConfigDict(dict(
      fps=25, resolution=64, clip_frames=16, steps=8, cfg="split", alpha=None, beta=None, shift=1.0,
      decode_timestep=0.0, decode_noise_scale=None))
  if arg.tiny:
    c.pipeline.update(dict(clip_frames=3, steps=2))
  return c

