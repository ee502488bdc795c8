"""Teacher vs distilled students: denoiser rows and wall seconds per clip, side by side in one run.

The sampler's per-clip program (``sampling.run_clip``: all steps of one clip, warm) timed for the teacher's
8-step Split CFG (3 rows per step: 24 denoiser rows per clip) and for one-pass students at 4, 2 and 1 steps
(1 row per step). Default: the demo model's sizes (configs/demo.py) with random weights (the timing does not
depend on them); ``--teacher`` / ``--student DIR`` time checkpoints instead, a student at the steps its
pipeline.json allows. ``--config a2v_dit.py`` with ``--latent 16`` times the paper's size (a GPU's job).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from read_jax.ans import sampling, solvers
from read_jax.ans.guidance import BRANCHES
from read_jax.bench.timing import print_table, time_fn
from read_jax.config import load_config
from read_jax.models import a2v_dit
from read_jax.models.vae import AutoencoderKLLTXVideo, compression_ratios
from read_jax.pipeline import ReadPipeline


def add_args(p):
  p.add_argument("--config", default="demo.py", help="a config with a dit section (demo.py) or a model section "
                 "(a2v_dit.py), random weights")
  p.add_argument("--teacher", default="", help="a teacher checkpoint directory instead of --config")
  p.add_argument("--student", action="append", default=[], help="a student checkpoint directory (repeatable)")
  p.add_argument("--latent", type=int, default=0, help="latent side h = w (default: the config's)")
  p.add_argument("--clip-frames", type=int, default=0, help="latent frames per clip (default: the config's)")
  p.add_argument("--teacher-steps", type=int, default=8)
  p.add_argument("--student-steps", default="4,2,1", help="with --config: the students' step counts")
  p.add_argument("--repeats", type=int, default=5)


def _model_and_sizes(args):
  config = load_config(args.config)
  fields = dict(config.dit if "dit" in config else config.model)
  if "pipeline" in config:
    ks, _ = compression_ratios(AutoencoderKLLTXVideo.from_config(config.vae).config)
    latent = config.pipeline.resolution // ks
    clip = config.pipeline.clip_frames
  else:
    latent, clip = config.data.latent_height, config.data.latent_frames
  return fields, args.latent or latent, args.clip_frames or clip


def _time_clip(model, params, *, clip_frames, latent, steps, cfg, repeats):
  denoise = a2v_dit.Denoiser(model)
  text, mask = a2v_dit.null_text(model.caption_channels)
  kv = model.apply({"params": params}, text, mask, method=a2v_dit.A2VDiT.encode_text)
  h = w = latent
  rng = np.random.default_rng(0)
  noise = jnp.asarray(rng.normal(size=(clip_frames, h, w, model.in_channels)), jnp.float32)
  z_ref = jnp.asarray(rng.normal(size=(h, w, model.in_channels)), jnp.float32)
  speech = jnp.asarray(rng.normal(size=(clip_frames, model.audio_tokens, model.audio_dim)), jnp.float32)
  sampler = solvers.Sampler.create(steps=steps, cfg=cfg)
  carry = sampling.first_carry(z_ref.shape, steps)
  carry = carry._replace(first=jnp.zeros((), bool))  # a later clip: the motion-frame path
  inputs = sampling.ClipInputs(carry, noise, z_ref, speech)

  def once():
    jax.block_until_ready(sampling.run_clip(denoise, sampler, (params, kv), inputs))

  t = time_fn(once, warmup=1, repeats=repeats)
  return t["median"]


def _init(fields, key):
  model = a2v_dit.build_model(fields)
  return model, a2v_dit.init_params(model, key)


def run(args) -> dict:
  rows = []
  if args.teacher or args.student:
    if not args.teacher:
      raise SystemExit("error: --student needs --teacher beside it (the side-by-side is the point)")
    entries = [("teacher", ReadPipeline.from_pretrained(args.teacher), [args.teacher_steps])]
    for d in args.student:
      pipe = ReadPipeline.from_pretrained(d)
      entries.append((f"student {d}", pipe, list(pipe.config.distilled_steps) or [pipe.config.steps]))
    res = entries[0][1].config.resolution
    latent = args.latent or res // compression_ratios(entries[0][1].vae.config)[0]
    clip = args.clip_frames or entries[0][1].config.clip_frames
    for name, pipe, steps_list in entries:
      cfg = "distilled" if pipe.dit.guidance_embeds else pipe.config.cfg
      for steps in steps_list:
        s = _time_clip(pipe.dit, pipe.dit_params, clip_frames=clip, latent=latent, steps=steps, cfg=cfg,
                       repeats=args.repeats)
        rows.append({"model": name, "steps": steps, "cfg": cfg, "rows_per_clip": steps * BRANCHES[cfg],
                     "s_per_clip": s})
  else:
    fields, latent, clip = _model_and_sizes(args)
    teacher, t_params = _init({**fields, "guidance_embeds": False}, jax.random.key(0))
    student, s_params = _init({**fields, "guidance_embeds": True}, jax.random.key(1))
    plan = [("teacher", teacher, t_params, args.teacher_steps, "split")]
    plan += [("student", student, s_params, int(n), "distilled") for n in args.student_steps.split(",") if n]
    for name, model, params, steps, cfg in plan:
      s = _time_clip(model, params, clip_frames=clip, latent=latent, steps=steps, cfg=cfg, repeats=args.repeats)
      rows.append({"model": name, "steps": steps, "cfg": cfg, "rows_per_clip": steps * BRANCHES[cfg], "s_per_clip": s})
  base = rows[0]["s_per_clip"]
  video_s = (1 + 8 * (clip - 1)) / 25.0
  for r in rows:
    r["speedup"] = base / r["s_per_clip"]
    r["clip_rtf"] = r["s_per_clip"] / video_s  # denoiser seconds per second of the clip's video
  print(f"per clip: {clip} latent frames ({video_s:.2f} s of video) at {latent}×{latent} latents, on "
        f"{jax.devices()[0].platform}")
  print_table(rows, ["model", "steps", "cfg", "rows_per_clip", "s_per_clip", "speedup", "clip_rtf"])
  return {"rows": rows, "clip_frames": clip, "latent": latent, "platform": jax.devices()[0].platform}
