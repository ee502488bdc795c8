"""read_jax: READ (real-time diffusion-transformer talking heads) in JAX/Flax.

The public API (imported on first use, so ``import read_jax`` is cheap and no module below depends on it):

  ReadPipeline, PipelineConfig   generation: ``ReadPipeline.from_pretrained(dir).write_video(ref, audio, out)``
  LiveSession, run_live          live generation: ``feed(pcm)`` as speech arrives, ``frames()`` as they are ready
  load_vae, load_transformer, load_whisper_encoder, load_text_embedding, export_torch, import_torch
                                 weights in and out (read_jax.convert)
  load_config                    experiment configs (configs/<name>.py[:arg], ``--config.a.b=v`` overrides)
  train                          one training stage: ``train(config, workdir)``
  InputError, CheckpointError, ConfigError, AudioError, MediaError, DataError
                                 the errors a user can cause (read_jax.errors)

Dimension legend, used in einsum strings and trailing shape comments throughout:

  B  batch                       T  frames of a tensor (latent frames in the DiT, video frames in the VAE input)
  F  video frames of a clip      f  latent frames of a clip: F = 1 + 8(f − 1)
  H  height                      W  width
  C  channels                    L  tokens (sequence length)
  D  model width                 N  attention heads
  K  head dimension              S  speech tokens per latent frame (hw = 2) or per video frame (Hw = 10)
  DA width of a Whisper state (tiny: 384), dA width of a speech latent token (2048), as in the paper

Every video tensor is channels-last, ``[B, T, H, W, C]``, pixels in [-1, 1].
"""

import importlib

__version__ = "0.1.0"

_API = {
  "ReadPipeline": "read_jax.pipeline",
  "LiveSession": "read_jax.live",
  "run_live": "read_jax.live",
  "PipelineConfig": "read_jax.pipeline",
  "load_vae": "read_jax.convert",
  "load_transformer": "read_jax.convert",
  "load_whisper_encoder": "read_jax.convert",
  "load_text_embedding": "read_jax.convert",
  "export_torch": "read_jax.convert.torch_export",
  "import_torch": "read_jax.convert.torch_export",
  "load_config": "read_jax.config",
  "train": "read_jax.train",
  "InputError": "read_jax.errors",
  "CheckpointError": "read_jax.errors",
  "ConfigError": "read_jax.errors",
  "AudioError": "read_jax.errors",
  "MediaError": "read_jax.errors",
  "DataError": "read_jax.errors",
}

__all__ = sorted(_API)


def __getattr__(name):
  if name in _API:
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'read_jax' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + __all__)
