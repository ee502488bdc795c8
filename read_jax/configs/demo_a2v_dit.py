"""Stage 2 of the demo model: its A2V-DiT (configs/demo.py ``dit``) + SpeechAE on the synthetic clips.

  configs/demo_a2v_dit.py          the demo run (scripts/train_demo.py): clips of 8 latent frames (57 video
                                   frames) of 4×4 latents, batch 8
  configs/demo_a2v_dit.py:smoke    a few steps at configs/demo.py:tiny's sizes (the end-to-end test)
  configs/demo_a2v_dit.py:rolling  the fine-tune of the bundled stage 2 for the rolling window (docs/serving.md):
                                   half the examples with rolling-window timesteps, from --config.init_checkpoint
  configs/demo_a2v_dit.py:causal   the bidirectional teacher made block-causal (the KV-cached window,
                                   read_jax/ans/causal.py): the causal mask, most examples in the causal window's
                                   pattern (clean context, the last frame noisy), from --config.init_checkpoint

Everything else is configs/a2v_dit.py (the paper's stage 2: the ANS forward process) but the sizes, the
schedule and two choices for this toy size and its 1e-3 learning rate: stage 1's SpeechAE stays frozen, and
timesteps come from the unshifted logit-normal (μ = 0). Why, with the measurements: docs/demo.md ("Stage 2").
"""

from read_jax.config import load_config, parse_arg
from read_jax.models.vae import compression_ratios, make_config


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False, rolling=False, causal=False)
  demo = load_config("demo.py:tiny" if arg.smoke else "demo.py")  # smoke: the tiny sizes
  c = load_config("a2v_dit.py")
  c.unlock()
  c.model = demo.dit.to_dict()
  c.speech_ae = demo.speech_ae.to_dict()
  c.train_speech_ae = False  # stage 1's SpeechAE stays frozen (fine-tuned at lr 1e-3 its latents collapse)
  side = demo.pipeline.resolution // compression_ratios(make_config(demo.vae))[0]  # the VAE's 16× (tiny: 32×)
  c.data.update(dict(latent_frames=demo.pipeline.clip_frames, latent_height=side, latent_width=side,
                     batch_size=8, val_batches=0, workers=2))
  c.ans.mu = 0.0  # the plain logit-normal, t ≈ 0.5 on average (the paper's 2.05 is for 16 × 16-latent frames)
  # 5,000 steps: the default CPU build (scripts/train_demo.py); the bundle ran 20,000 (--dit-steps 20000).
  c.train.update(dict(steps=5000, lr=1e-3, end_lr_fraction=0.1, warmup_steps=50, accum_steps=1, log_every=50,
                      eval_every=750, ckpt_every=2500, keep_checkpoints=2))
  c.mesh.update(dict(data=-1, fsdp=1))
  if arg.rolling:
    c.ans.p_rolling = 0.5  # the other half keeps the ANS patterns, so clip mode stays as trained
    c.ans.rolling_noisy = (1, 2)
    c.train.update(dict(steps=4000, lr=3e-4, warmup_steps=50, ckpt_every=2000))
  if arg.causal:
    c.model.causal = True
    # The cached window's step is a rolling pattern with W = 1 (f − 1 clean frames at t = 0, the last noisy); a
    # quarter keep the ANS patterns (every frame a target, under the mask: diffusion forcing's noisy context).
    c.ans.p_rolling = 0.75
    c.ans.rolling_noisy = (1,)
    c.train.update(dict(steps=4000, lr=3e-4, warmup_steps=50, ckpt_every=2000))
  if arg.smoke:
    c.mesh.data = 1  # one device
    c.data.update(dict(batch_size=4, workers=1))
    c.train.update(dict(steps=4, warmup_steps=1, log_every=2, eval_every=0, ckpt_every=4, progress_bar=False))
  return c
