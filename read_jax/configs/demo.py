"""A whole small READ model: every part's config in one place (the demo model, pipeline tests, bench sample).

  configs/demo.py          the bundled demo model (assets/demo): 64² frames → 4×4 latents (16× space, 8× time),
                           clips of 8 latent frames, OpenAI's Whisper tiny.en (the paper's speech path, S
                           [F, 10, 384]) on live 4 s windows; trained by scripts/train_demo.py on the synthetic set
  configs/demo.py:tiny     random-weight smoke size: 2×2 latents, clips of 3 latent frames, 2 sampling steps,
                           a 24-wide random Whisper on whole 1 s windows

Sections: ``vae`` (configs/vae_ltx.py keys), ``whisper`` (configs/whisper.py keys), ``speech_ae``
(SpeechAE fields), ``dit`` (A2VDiT fields), ``pipeline`` (read_jax.pipeline.PipelineConfig fields).
``ReadPipeline.from_config(key, config)`` builds it with fresh weights; configs/demo_{vae,speechae,a2v_dit}.py
train its parts.
"""

import ml_collections

from read_jax.config import load_config, parse_arg


def _sibling(name, arg):
  config = load_config(f"{name}.py:{arg}")
  config.unlock()
  return config


def get_config(arg=None):
  arg = parse_arg(arg, tiny=False)
  c = ml_collections.ConfigDict()
  # The speech encoder: tiny.en's Whisper encoder (= tiny's; scripts/train_demo.py imports the real weights);
  # tiny: 24 wide, 2 layers, 1 s windows. ``kind`` names it in read_jax.convert.speech_encoders.
  c.speech_encoder = _sibling("whisper", "test" if arg.tiny else "tiny")
  if arg.tiny:
    c.vae = _sibling("vae_ltx", "tiny")  # 32× space / 8× time, 8 latent channels
    c.dit = _sibling("a2v_dit", "tiny").model  # 2 blocks, 2 heads × 8, 8 channels in/out
    sae_hidden = 16
  else:
    # LTX's 0.9.0 blocks with a 2×2 pixel patch (LTX: 4×4): 16× space, 8× time, so a 64² face is 4×4 latents.
    c.vae = _sibling("vae_ltx", "tiny,patch_size=2,latent_channels=16")
    c.vae.block_out_channels = c.vae.decoder_block_out_channels = (16, 32, 64, 64)
    c.dit = _sibling("a2v_dit", "tiny").model
    c.dit.update(dict(num_layers=4, num_heads=4, head_dim=16, cross_attention_dim=64, in_channels=16,
                      out_channels=16, caption_channels=16, audio_dim=64, vae_scale=(8, 16, 16)))
    sae_hidden = 64
  c.speech_ae = ml_collections.ConfigDict(dict(
      feature_dim=c.speech_encoder.d_model,  # DA = the speech encoder's width
      window=10,  # Hw (fixed by the per-frame windows)
      hidden_dim=sae_hidden,  # SpeechAE width
      latent_tokens=c.dit.audio_tokens,  # hw
      latent_dim=c.dit.audio_dim,  # dA
      kernel_size=3,  # causal conv taps
  ))
  # Generation settings (PipelineConfig fields). cfg="none": no guidance for this model (docs/demo.md, "Stage 2").
  c.pipeline = ml_collections.ConfigDict(dict(
      fps=25, resolution=64, clip_frames=8, steps=8, cfg="none", alpha=None, beta=None, shift=1.0, solver="euler",
      decode_timestep=0.0, decode_noise_scale=None,
      text_conditioning=False,  # no prompt: the synthetic faces have no text (text attention off, by design)
      face_crop=False,  # trained on whole 64² frames of the drawn faces: the reference is used as it is
      speech_window="live",  # features a live session reproduces exactly (read_jax.speech, "live")
      # Files in ANS clips; live sessions in the rolling window, one noisy frame (docs/serving.md, "Clip mode and
      # the rolling window": first frame 0.57 s vs 2.5 s, lip sync 0.727 vs 0.744).
      mode="clip", live_mode="rolling", noisy_frames=1, decode_context=0))
  if arg.tiny:
    c.pipeline.update(dict(clip_frames=3, steps=2, speech_window="whole", live_mode="clip"))
  return c
