"""VAE decode: read_jax (jitted) vs diffusers' AutoencoderKLLTXVideo, same tiny config, weights and latents.

  python scripts/bench.py vae [--variant 0.9.1] [--frames 17] [--height 128] [--width 192] [--repeats 5]
"""

import os

import numpy as np

from benchmarks._timing import print_table, time_fn


def add_args(parser):
  parser.add_argument("--variant", default="0.9.0", choices=("0.9.0", "0.9.1", "0.9.5"),
                      help="tiny config of this version (configs/vae_ltx.py)")
  parser.add_argument("--frames", type=int, default=17, help="pixel frames (1 + 8k)")
  parser.add_argument("--height", type=int, default=128, help="pixel height (multiple of 32)")
  parser.add_argument("--width", type=int, default=192, help="pixel width (multiple of 32)")
  parser.add_argument("--repeats", type=int, default=5, help="timed runs per implementation")


def run(args):
  import jax
  import torch
  from diffusers import AutoencoderKLLTXVideo as TorchVAE

  from read_jax.config import load_config
  from read_jax.convert.vae import state_dict_to_variables
  from read_jax.models.vae import AutoencoderKLLTXVideo, make_config

  cfg = make_config(load_config(f"vae_ltx.py:{args.variant},tiny"))
  torch.manual_seed(0)
  ref = TorchVAE(**{k: v for k, v in cfg.to_diffusers().items() if k != "_class_name"}).eval()
  model = AutoencoderKLLTXVideo.from_config(cfg)
  variables = state_dict_to_variables(model, {k: v.numpy() for k, v in ref.state_dict().items()})
  variables = jax.device_put(variables)

  t = (args.frames - 1) // 8 + 1
  z = np.random.RandomState(0).randn(1, t, args.height // 32, args.width // 32, cfg.latent_channels).astype(np.float32)
  timestep = np.array([0.05], np.float32)
  z_jax = jax.device_put(z)
  z_torch = torch.from_numpy(np.ascontiguousarray(np.moveaxis(z, -1, 1)))
  t_torch = torch.from_numpy(timestep) if cfg.timestep_conditioning else None

  decode = jax.jit(lambda v, z, ts: model.apply(v, z, ts, method=model.decode))
  ours = lambda: decode(variables, z_jax, timestep).block_until_ready()

  def theirs():
    with torch.inference_mode():
      return ref.decode(z_torch, t_torch).sample

  out_ours, out_ref = np.asarray(ours()), np.moveaxis(theirs().numpy(), 1, -1)
  rel = float(np.linalg.norm(out_ours - out_ref) / np.linalg.norm(out_ref))

  r_ours = time_fn(ours, warmup=1, repeats=args.repeats)
  r_ref = time_fn(theirs, warmup=1, repeats=args.repeats)
  xla_flags = os.environ.get("XLA_FLAGS", "")
  print(f"VAE decode, tiny {args.variant} config, latents {tuple(z.shape)} -> video {out_ours.shape}, "
        f"float32, CPU; outputs agree to rel. err {rel:.2e}")
  print(f"torch threads: {torch.get_num_threads()}, CPU cores: {os.cpu_count()}, jax devices: "
        f"{len(jax.devices())} ({jax.devices()[0].platform}); XLA_FLAGS={xla_flags!r} "
        f"(XLA's CPU backend uses all cores: fair when torch threads == cores)")
  print_table([{"impl": "read_jax (jit)", "median_s": r_ours["median"], "min_s": r_ours["min"]},
               {"impl": "diffusers (torch)", "median_s": r_ref["median"], "min_s": r_ref["min"]}],
              ["impl", "median_s", "min_s"])
  print(f"ratio ours / diffusers (median): {r_ours['median'] / r_ref['median']:.2f}x  (target <= 1.0x)")
