"""Stage 1 of the demo model: its SpeechAE (configs/demo.py ``speech_ae``) on the synthetic speech.

  configs/demo_speechae.py          the demo run (scripts/train_demo.py)
  configs/demo_speechae.py:smoke    a few steps at configs/demo.py:tiny's sizes (the end-to-end test)

Everything but the sizes and the schedule is configs/speechae.py (the paper's stage 1).
"""

from read_jax.config import load_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False)
  c = load_config("speechae.py")
  c.unlock()
  demo = load_config("demo.py:tiny" if arg.smoke else "demo.py")  # smoke: the tiny sizes
  c.model = demo.speech_ae.to_dict()
  c.data.update(dict(num_frames=1 + 8 * (demo.pipeline.clip_frames - 1),  # one clip's video frames (57)
                     batch_size=8, val_batches=0, workers=2))
  # 20,000 steps at 2e-3: long enough for the latents to keep when the mouth moves (docs/demo.md, "What made it
  # lip-sync").
  c.train.update(dict(steps=20000, lr=2e-3, warmup_steps=50, log_every=100, eval_every=5000, ckpt_every=5000,
                      keep_checkpoints=2))
  if arg.smoke:
    c.data.update(dict(batch_size=2, workers=1))
    c.train.update(dict(steps=4, warmup_steps=1, log_every=2, eval_every=0, ckpt_every=4, progress_bar=False))
  return c
