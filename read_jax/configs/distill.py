"""Distillation of the A2V-DiT into a few-step, one-pass student (read_jax/train/distill_stage.py).

  configs/distill.py                              full size (configs/a2v_dit.py's model and data), guidance round
  configs/distill.py:mode=progressive,student_steps=4   a progressive round: 8 → 4 steps (then 2, then 1)
  configs/distill.py:demo                         the demo model's sizes (configs/demo_a2v_dit.py), as
                                                  scripts/train_demo.py's distillation steps run it
  configs/distill.py:smoke                        tiny (configs/a2v_dit.py:tiny sizes): tests
  configs/distill.py:demo,smoke                   a few steps at the demo build's smoke sizes (configs/demo.py:tiny)
  configs/distill.py:demo,causal,mode=progressive,student_steps=2   a causal student's round
                                                  (configs/demo_a2v_dit.py:causal's model; the causal window's step)

  python scripts/train.py --config distill.py:demo --workdir runs/guidance \\
      --config.init_checkpoint=assets/demo --config.data.train_glob='clips/train-*'
  python scripts/convert.py import-run --run runs/guidance --out student_g   # after copying the teacher dir
  python scripts/train.py --config distill.py:demo,mode=progressive,student_steps=4 --workdir runs/s4 \\
      --config.init_checkpoint=student_g ...

The teacher (``config.init_checkpoint``) is a read_jax checkpoint directory: the CFG teacher for the guidance
round, the previous round's student for a progressive one. Its A2V-DiT must have the fields of
``config.model`` (the student adds the guidance embedding). docs/distillation.md: the method and the numbers.
"""

from read_jax.config import load_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, smoke=False, causal=False, mode="guidance", student_steps=4)
  if arg.demo:
    c = load_config("demo_a2v_dit.py:" + ",".join(a for a, on in (("smoke", arg.smoke), ("causal", arg.causal)) if on))
  elif arg.smoke:
    c = load_config("a2v_dit.py:tiny")
  else:
    c = load_config("a2v_dit.py")
  c.unlock()
  c.stage = "distill"  # read_jax.train.stages.STAGES key
  c.train_speech_ae = False  # the teacher's SpeechAE, frozen
  c.distill = dict(
    mode=arg.mode,  # "guidance" (Split CFG → one pass) or "progressive" (2n → n steps)
    student_steps=arg.student_steps,  # progressive: the student's steps n (the teacher samples with 2n)
    shift=1.0,  # progressive: the schedules' time shift (the pipeline's ``shift``)
    # progressive: the sampler whose steps are distilled, read_jax.ans.distill.PATTERNS: "clip" (ANS clips) or
    # "causal" (the cached window: the last frame after a clean context; a causal model, model.causal)
    pattern="causal" if arg.causal else "clip",
    # (α, β) drawn uniformly per example from these ranges (the student takes them as input; the paper's
    # (2, 6) inside). A range of width 0 distils one setting.
    alpha=[1.0, 3.0],
    beta=[2.0, 8.0],
  )
  # The student starts as its teacher: the stage-2 learning rate, a short warmup, no decay to speak of.
  c.train.update(dict(steps=10_000, warmup_steps=200, end_lr_fraction=1.0, eval_every=1000))
  if arg.demo and arg.smoke:  # the demo build's end-to-end test: a few steps at its tiny sizes
    c.train.update(dict(steps=4, warmup_steps=1, log_every=2, eval_every=0, ckpt_every=4, progress_bar=False))
  elif arg.demo:
    # configs/demo_a2v_dit.py trains at 1e-3 from scratch; a student that starts at its teacher takes smaller steps.
    c.train.update(dict(steps=2000, lr=3e-4, warmup_steps=50, end_lr_fraction=0.1, eval_every=0, ckpt_every=1000))
  if arg.demo:
    # The demo samples with one branch (configs/demo.py: cfg "none"), Eq. 17 at (α, β) = (0, 1): its students
    # learn that sampler, and the build skips the guidance round (read_jax/demo/build.py).
    c.distill.update(dict(alpha=[0.0, 0.0], beta=[1.0, 1.0]))
  elif arg.smoke:
    c.data.update(dict(latent_frames=3))
    c.train.update(dict(steps=40, lr=1e-3, warmup_steps=2, eval_every=20, ckpt_every=20, log_every=5))
  return c
