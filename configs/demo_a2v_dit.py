"""Stage 2 of the demo model: its A2V-DiT (configs/demo.py ``dit``) + SpeechAE on the synthetic clips.

  configs/demo_a2v_dit.py          the demo run (scripts/train_demo.py): clips of 8 latent frames (57 video
                                   frames) of 4×4 latents, batch 8
  configs/demo_a2v_dit.py:smoke    a few steps (the end-to-end test)

Everything but the sizes and the schedule is configs/a2v_dit.py (the paper's stage 2: the ANS forward
process, SpeechAE fine-tuned jointly).
"""

from read_jax.config import load_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False)
  demo = load_config("demo.py")
  c = load_config("a2v_dit.py")
  c.unlock()
  c.model = demo.dit.to_dict()
  c.speech_ae = demo.speech_ae.to_dict()
  side = demo.pipeline.resolution // 16  # the demo VAE's 16× spatial compression
  c.data.update(dict(latent_frames=demo.pipeline.clip_frames, latent_height=side, latent_width=side,
                     batch_size=8, val_batches=0, workers=2))
  c.train.update(dict(steps=1500, lr=1e-3, end_lr_fraction=0.1, warmup_steps=50, accum_steps=1, log_every=50,
                      eval_every=750, ckpt_every=500, keep_checkpoints=2))
  c.mesh.update(dict(data=-1, fsdp=1))
  if arg.smoke:
    c.data.update(dict(batch_size=4, workers=1))
    c.train.update(dict(steps=4, warmup_steps=1, log_every=2, eval_every=0, ckpt_every=4, progress_bar=False))
  return c
