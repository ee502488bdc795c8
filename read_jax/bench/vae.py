"""VAE decode: read_jax (jitted) vs diffusers' AutoencoderKLLTXVideo, same config, weights and latents.

  python scripts/bench.py vae [--variant 0.9.1] [--frames 17] [--height 128] [--width 192] [--repeats 5]
  python scripts/bench.py vae --size full --variant 0.9.1 --frames 129 --height 512 --width 512 \
      --platform gpu --dtype float32,bfloat16

``--size tiny`` (default) is the variant's tiny config (configs/vae_ltx.py), ``full`` its real size.
Weights are diffusers' random initialisation (the 0.9.1 noise-injection scales start at zero, so its
injected noise adds nothing and the two outputs can be compared); ours decodes with no noise key.
Each ``--dtype`` runs both implementations in that compute dtype (ours keeps its norms in float32).
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.bench.timing import print_table, time_fn
from read_jax.config import load_config
from read_jax.convert.vae import state_dict_to_variables
from read_jax.models.vae import AutoencoderKLLTXVideo, make_config


def add_args(parser):
  parser.add_argument("--variant", default="0.9.0", choices=("0.9.0", "0.9.1", "0.9.5"),
                      help="config of this version (configs/vae_ltx.py)")
  parser.add_argument("--size", default="tiny", choices=("tiny", "full"), help="tiny or real-size config")
  parser.add_argument("--frames", type=int, default=17, help="pixel frames (1 + 8k)")
  parser.add_argument("--height", type=int, default=128, help="pixel height (multiple of 32)")
  parser.add_argument("--width", type=int, default=192, help="pixel width (multiple of 32)")
  parser.add_argument("--repeats", type=int, default=5, help="timed runs per implementation")
  parser.add_argument("--platform", default="cpu", choices=("cpu", "gpu"), help="device of both jax and torch")
  parser.add_argument("--dtype", default="float32", help="comma-separated compute dtypes: float32, bfloat16")


def run(args) -> dict:
  """Prints the comparison; returns its numbers (times in s, memory in bytes; read_jax/bench/gpu.py records them)."""
  jax.config.update("jax_platforms", "cuda" if args.platform == "gpu" else "cpu")
  import torch  # optional heavy dependencies: the PyTorch reference
  from diffusers import AutoencoderKLLTXVideo as TorchVAE

  cfg = make_config(load_config(f"vae_ltx.py:{args.variant}" + (",tiny" if args.size == "tiny" else "")))
  device = torch.device("cuda" if args.platform == "gpu" else "cpu")
  on_gpu = device.type == "cuda"
  sync = torch.cuda.synchronize if on_gpu else (lambda: None)
  t0 = time.perf_counter()
  torch.manual_seed(0)
  with device:
    ref = TorchVAE(**{k: v for k, v in cfg.to_diffusers().items() if k != "_class_name"}).eval()
  model = AutoencoderKLLTXVideo.from_config(cfg)
  variables = state_dict_to_variables(model, {k: v.float().cpu().numpy() for k, v in ref.state_dict().items()})
  variables = jax.device_put(variables)
  print(f"weights: {sum(p.numel() for p in ref.parameters()) / 1e6:.1f} M parameters, init + mapping "
        f"{time.perf_counter() - t0:.1f} s", flush=True)

  t = (args.frames - 1) // 8 + 1
  z = np.random.RandomState(0).randn(1, t, args.height // 32, args.width // 32, cfg.latent_channels).astype(np.float32)
  timestep = np.array([0.05], np.float32)
  z_jax = jax.device_put(z)
  xla_flags = os.environ.get("XLA_FLAGS", "")
  print(f"torch {device} ({torch.get_num_threads()} threads), CPU cores: {os.cpu_count()}, jax devices: "
        f"{len(jax.devices())} ({jax.devices()[0].platform}); XLA_FLAGS={xla_flags!r}"
        + ("" if on_gpu else " (XLA's CPU backend uses all cores: fair when torch threads == cores)"))

  result = {"config": {"variant": args.variant, "size": args.size, "latents": list(z.shape),
                       "platform": args.platform}}
  rows = []
  for dtype in args.dtype.split(","):
    ours_model = AutoencoderKLLTXVideo(cfg, dtype=jnp.dtype(dtype), param_dtype=jnp.float32)
    vs = {"params": jax.tree.map(lambda a: a.astype(dtype), variables["params"]), "buffers": variables["buffers"]}
    t0 = time.perf_counter()
    decode = jax.jit(lambda v, z, ts: ours_model.apply(v, z, ts, method=ours_model.decode)).lower(
        vs, z_jax, timestep).compile()
    compile_s = time.perf_counter() - t0
    mem = decode.memory_analysis()
    ours = lambda: decode(vs, z_jax, timestep).block_until_ready()  # noqa: E731

    if next(ref.parameters()).dtype != getattr(torch, dtype):
      ref = ref.to(getattr(torch, dtype))
    z_torch = torch.from_numpy(np.ascontiguousarray(np.moveaxis(z, -1, 1)))
    z_torch = z_torch.to(device=device, dtype=getattr(torch, dtype))
    t_torch = torch.from_numpy(timestep).to(device) if cfg.timestep_conditioning else None

    def theirs():
      with torch.inference_mode():
        out = ref.decode(z_torch, t_torch).sample
      sync()
      return out

    out_ours = np.asarray(ours(), np.float32)
    if on_gpu:
      torch.cuda.reset_peak_memory_stats()
    out_ref = np.moveaxis(theirs().float().cpu().numpy(), 1, -1)
    torch_peak = torch.cuda.max_memory_allocated() if on_gpu else None
    rel = float(np.linalg.norm(out_ours - out_ref) / np.linalg.norm(out_ref))
    del out_ours, out_ref

    r_ours = time_fn(ours, warmup=1, repeats=args.repeats)
    r_ref = time_fn(theirs, warmup=1, repeats=args.repeats)
    stats = jax.devices()[0].memory_stats() or {}
    res = {"compile_s": compile_s, "rel_error_vs_diffusers": rel, "ours_median_s": r_ours["median"],
           "diffusers_median_s": r_ref["median"], "ours_over_diffusers": r_ours["median"] / r_ref["median"],
           "ours_temp_bytes": getattr(mem, "temp_size_in_bytes", None),
           "ours_args_bytes": getattr(mem, "argument_size_in_bytes", None),
           "ours_output_bytes": getattr(mem, "output_size_in_bytes", None),
           "jax_process_peak_bytes": stats.get("peak_bytes_in_use"), "diffusers_peak_bytes": torch_peak}
    result[dtype] = res
    print(f"VAE decode, {args.size} {args.variant} config, latents {tuple(z.shape)} -> video "
          f"(1, {1 + 8 * (t - 1)}, {args.height}, {args.width}, 3), {dtype}, {args.platform}; ours compiled in "
          f"{compile_s:.1f} s; outputs agree to rel. err {rel:.2e}", flush=True)
    if on_gpu:
      gib = lambda b: None if b is None else round(b / 2**30, 2)  # noqa: E731
      print(f"  memory GiB: ours temp {gib(res['ours_temp_bytes'])}, args {gib(res['ours_args_bytes'])}, "
            f"output {gib(res['ours_output_bytes'])}, jax process peak so far {gib(res['jax_process_peak_bytes'])}; "
            f"diffusers peak allocated {gib(torch_peak)}", flush=True)
    rows += [{"impl": "read_jax (jit)", "dtype": dtype, "median_s": r_ours["median"], "min_s": r_ours["min"]},
             {"impl": "diffusers (torch)", "dtype": dtype, "median_s": r_ref["median"], "min_s": r_ref["min"]}]
    print(f"ratio ours / diffusers ({dtype}, median): {res['ours_over_diffusers']:.2f}x  (target <= 1.0x)", flush=True)
  print_table(rows, ["impl", "dtype", "median_s", "min_s"])
  return result
