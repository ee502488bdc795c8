"""Stage 1 of the demo model: its SpeechAE (configs/demo.py ``speech_ae``) on the synthetic speech.

  configs/demo_speechae.py          the demo run (scripts/train_demo.py)
  configs/demo_speechae.py:smoke    a few steps (the end-to-end test)

Everything but the sizes and the schedule is configs/speechae.py (the paper's stage 1).
"""

from read_jax.config import load_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False)
  c = load_config("speechae.py")
  c.unlock()
  c.model = load_config("demo.py").speech_ae.to_dict()
  c.data.update(dict(num_frames=57, batch_size=8, val_batches=0, workers=2))
  # 20,000 steps at 2e-3 (≈ 3.5 min here). What stage 2 can lip-sync to is what the latents keep of the speech:
  # a linear read-out of the true mouth opening (all 8 frames of a latent frame) from them reaches r 0.82 after
  # this run, 0.66 after the 1,500 steps at 1e-3 that built the previous bundle, 0.86 from the raw Whisper windows
  # (12 test clips of 4 s; 2, 4 or 8 latent tokens make no difference at equal steps).
  c.train.update(dict(steps=20000, lr=2e-3, warmup_steps=50, log_every=100, eval_every=5000, ckpt_every=5000,
                      keep_checkpoints=2))
  if arg.smoke:
    c.data.update(dict(batch_size=2, workers=1))
    c.train.update(dict(steps=4, warmup_steps=1, log_every=2, eval_every=0, ckpt_every=4, progress_bar=False))
  return c
