"""read_jax: READ (real-time diffusion-transformer talking heads) in JAX/Flax.

Dimension legend, used in einsum strings and trailing shape comments throughout:

  B  batch                       T  frames (latent frames in the DiT, video frames in the VAE input)
  H  height                      W  width
  C  channels                    L  tokens (sequence length)
  D  model width                 N  attention heads
  K  head dimension              S  speech tokens per latent frame (hw = 2) or per video frame (Hw = 10)
  F  feature width of a speech frame (Whisper: 384)

Every video tensor is channels-last, ``[B, T, H, W, C]``, pixels in [-1, 1].
"""

__version__ = "0.1.0"
