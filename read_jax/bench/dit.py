"""A2V-DiT forward vs diffusers' LTX transformer (same config, weights and inputs); Split-CFG step vs one branch.

Ours is jitted (compiled ahead of time, one program per attention implementation and batch) with the
audio attention off (speech=None); diffusers runs eagerly under ``torch.inference_mode``; both run on
the same device (``--platform``) in the same dtype. Reported:
  ours / diffusers          (target ≤ 1.0×)
  3 branches in one pass / 1 branch   (Split-CFG batched on the batch axis; target ≤ 3.0×)

  python scripts/bench.py dit                                        # small model, float32, CPU
  python scripts/bench.py dit --size full --platform gpu --dtype bfloat16 --attention cudnn,xla

``--size full`` is LTX-Video 2B's transformer (diffusers' defaults: 28 blocks, 32 heads × 64, T5-XXL
text) at the paper's clip, x [B, 17, 16, 16, 128] (4352 tokens per example), 128 text tokens.
Weights are diffusers' random initialisation, mapped to ours by ``params_from_state_dict``.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.bench.timing import print_table, time_fn
from read_jax.convert.ltx_transformer import params_from_state_dict
from read_jax.models.a2v_dit import A2VDiT

# Shape presets; an explicit flag overrides its preset value.
SIZES = {
  "small": dict(layers=2, heads=4, head_dim=64, channels=128, caption_channels=256, frames=5, height=8, width=8,
                text_len=16),
  "full": dict(layers=28, heads=32, head_dim=64, channels=128, caption_channels=4096, frames=17, height=16,
               width=16, text_len=128),
}


def add_args(p):
  p.add_argument("--size", default="small", choices=tuple(SIZES), help="shape preset (flags below override it)")
  p.add_argument("--layers", type=int, help="transformer blocks")
  p.add_argument("--heads", type=int, help="attention heads")
  p.add_argument("--head-dim", type=int, help="head width (model width = heads × head-dim)")
  p.add_argument("--channels", type=int, help="latent channels")
  p.add_argument("--caption-channels", type=int, help="text embedding width")
  p.add_argument("--frames", type=int, help="latent frames T (reference included)")
  p.add_argument("--height", type=int, help="latent height")
  p.add_argument("--width", type=int, help="latent width")
  p.add_argument("--text-len", type=int, help="prompt tokens")
  p.add_argument("--batch", type=int, default=1, help="batch of one branch")
  p.add_argument("--repeats", type=int, default=10, help="timed runs (median reported)")
  p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
  p.add_argument("--platform", default="cpu", choices=("cpu", "gpu"), help="device of both jax and torch")
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="compute dtype of both")
  p.add_argument("--attention", default="xla",
                 help="comma-separated self-attention implementations of ours (read_jax.nn.attention), e.g. cudnn,xla")


def _resolve_size(args) -> dict:
  """The preset of ``args.size`` with every explicitly passed flag on top."""
  shape = dict(SIZES[args.size])
  shape.update({k: getattr(args, k) for k in shape if getattr(args, k) is not None})
  return shape


def run(args) -> dict:
  """Prints the comparison; returns its numbers (times in ms; read_jax/bench/gpu.py records them)."""
  jax.config.update("jax_platforms", "cuda" if args.platform == "gpu" else "cpu")
  import torch  # optional heavy dependencies: the PyTorch reference
  from diffusers import LTXVideoTransformer3DModel

  s = _resolve_size(args)
  impls = args.attention.split(",")
  device = torch.device("cuda" if args.platform == "gpu" else "cpu")
  torch_dtype = getattr(torch, args.dtype)
  if args.threads:
    torch.set_num_threads(args.threads)
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  dim = s["heads"] * s["head_dim"]
  t0 = time.perf_counter()
  torch.manual_seed(0)
  with device:  # initialise on the device: a 2B-parameter init on the CPU takes minutes
    ref = LTXVideoTransformer3DModel(in_channels=s["channels"], out_channels=s["channels"],
                                     num_attention_heads=s["heads"], attention_head_dim=s["head_dim"],
                                     cross_attention_dim=dim, num_layers=s["layers"],
                                     caption_channels=s["caption_channels"]).eval()
  # Float32 storage for the mapping, the compute dtype for the run (flax casts params to ``dtype``).
  models = {impl: A2VDiT(in_channels=s["channels"], out_channels=s["channels"], num_layers=s["layers"],
                         num_heads=s["heads"], head_dim=s["head_dim"], cross_attention_dim=dim,
                         caption_channels=s["caption_channels"], audio_dim=dim, attention=impl, dtype=args.dtype)
            for impl in impls}
  state = {k: v.float().cpu().numpy() for k, v in ref.state_dict().items()}
  params = params_from_state_dict(state, models[impls[0]])
  del state
  params = jax.tree.map(lambda a: jnp.asarray(a, args.dtype), jax.device_put(params))
  if torch_dtype != torch.float32:
    ref = ref.to(torch_dtype)
  n_params = sum(p.numel() for p in ref.parameters())
  print(f"weights: {n_params / 1e9:.3f} B parameters, diffusers init on {device} + mapping "
        f"{time.perf_counter() - t0:.1f} s", flush=True)

  rng = np.random.default_rng(0)
  b1, b3 = args.batch, 3 * args.batch
  frames, hw, c = s["frames"], s["height"] * s["width"], s["channels"]
  x = rng.standard_normal((b3, frames, s["height"], s["width"], c)).astype(np.float32)
  t = np.concatenate([np.zeros((b3, 1)), np.full((b3, frames - 1), 0.6)], axis=1).astype(np.float32)
  text = rng.standard_normal((b3, s["text_len"], s["caption_channels"])).astype(np.float32)
  mask = np.ones((b3, s["text_len"]), bool)
  mask[:, s["text_len"] * 3 // 4:] = False

  compiled, compile_s = {}, {}
  for impl in impls:  # one program per (implementation, batch); the first implementation first
    for n in (b1, b3):
      inputs = tuple(jax.device_put(a[:n]) for a in (x, t, text, mask))
      t0 = time.perf_counter()
      fn = jax.jit(models[impl].apply).lower({"params": params}, inputs[0], inputs[1], None, *inputs[2:]).compile()
      compile_s[impl, n] = time.perf_counter() - t0
      compiled[impl, n] = (fn, inputs)
      print(f"compiled ours ({impl}, batch {n}) in {compile_s[impl, n]:.1f} s", flush=True)

  def ours(impl, n):
    fn, (xs, ts, texts, masks) = compiled[impl, n]
    return lambda: fn({"params": params}, xs, ts, None, texts, masks).block_until_ready()

  def theirs(n):
    as_torch = lambda a, dt=torch_dtype: torch.from_numpy(a).to(device=device, dtype=dt)  # noqa: E731
    kw = dict(hidden_states=as_torch(x[:n].reshape(n, -1, c)), encoder_hidden_states=as_torch(text[:n]),
              timestep=as_torch(np.repeat(t[:n] * 1000, hw, axis=1), torch.float32),
              encoder_attention_mask=as_torch(mask[:n].astype(np.float32)),
              num_frames=frames, height=s["height"], width=s["width"],
              rope_interpolation_scale=(8 / 25, 32, 32), return_dict=False)

    def fn():
      with torch.inference_mode():
        out = ref(**kw)[0]
      sync()
      return out
    return fn

  # Same answer first (so the timings compare the same computation).
  want = theirs(b1)().float().cpu().numpy().reshape(b1, frames, s["height"], s["width"], c)
  errors = {}
  for impl in impls:
    got = np.asarray(ours(impl, b1)(), np.float32)
    errors[impl] = float(np.linalg.norm(got - want) / np.linalg.norm(want))
  print("relative error vs diffusers: " + ", ".join(f"{i} {e:.2e}" for i, e in errors.items()), flush=True)

  # Interleaved rounds (each round runs every variant once), so load from other processes on a shared
  # machine hits all variants alike.
  fns = {(f"read_jax ({impl})", n): ours(impl, n) for impl in impls for n in (b1, b3)}
  fns.update({("diffusers (eager)", n): theirs(n) for n in (b1, b3)})
  runs = {k: [] for k in fns}
  for k, fn in fns.items():  # warm-up (cuDNN plans, torch kernels)
    fn()
  for _ in range(args.repeats):
    for k, fn in fns.items():
      runs[k].append(time_fn(fn, warmup=0, repeats=1)["min"])
  med = {k: float(np.median(v)) for k, v in runs.items()}
  rows = [{"impl": name, "batch": n, "median_ms": 1e3 * med[name, n], "min_ms": 1e3 * np.min(runs[name, n])}
          for name, n in runs]
  print(f"A2V-DiT vs LTX: {s['layers']} blocks, width {dim} ({s['heads']}×{s['head_dim']}), "
        f"x [{b1}, {frames}, {s['height']}, {s['width']}, {c}] ({frames * hw} tokens), text {s['text_len']}; "
        f"{args.dtype}; torch {device} ({torch.get_num_threads()} threads), {os.cpu_count()} CPUs, "
        f"jax {jax.default_backend()}")
  print_table(rows, ["impl", "batch", "median_ms", "min_ms"])
  theirs1, theirs3 = med["diffusers (eager)", b1], med["diffusers (eager)", b3]
  result = {"config": {**s, "batch": b1, "dtype": args.dtype, "platform": args.platform,
                       "parameters": n_params},
            "rel_error_vs_diffusers": errors, "median_ms": {f"{k[0]} b{k[1]}": 1e3 * v for k, v in med.items()},
            "compile_s": {f"{i} b{n}": v for (i, n), v in compile_s.items()}, "diffusers_3_over_1": theirs3 / theirs1}
  for impl in impls:
    ours1, ours3 = med[f"read_jax ({impl})", b1], med[f"read_jax ({impl})", b3]
    print(f"[{impl}] ours / diffusers: batch {b1} {ours1 / theirs1:.3f}x, batch {b3} {ours3 / theirs3:.3f}x "
          f"(target <= 1.0x); Split-CFG 3 branches / 1 branch {ours3 / ours1:.3f}x (target <= 3.0x)")
    result[impl] = {"ours_over_diffusers_b1": ours1 / theirs1, "ours_over_diffusers_b3": ours3 / theirs3,
                    "split_cfg_3_over_1": ours3 / ours1}
  print(f"diffusers Split-CFG 3 branches / 1 branch {theirs3 / theirs1:.3f}x")
  # XLA's own count of the compiled programs' work: deterministic, unlike wall time on a shared machine.
  cost = {}
  for n in (b1, b3):
    c_ = compiled[impls[0], n][0].cost_analysis()
    cost[n] = (c_[0] if isinstance(c_, (list, tuple)) else c_) or {}
  ratio = lambda key: cost[b3].get(key, float("nan")) / cost[b1].get(key, float("nan"))  # noqa: E731
  print(f"Split-CFG compiled cost 3 branches / 1 branch:  flops {ratio('flops'):.3f}x, "
        f"bytes accessed {ratio('bytes accessed'):.3f}x")
  result["compiled_flops"] = {f"b{n}": cost[n].get("flops") for n in (b1, b3)}
  return result
