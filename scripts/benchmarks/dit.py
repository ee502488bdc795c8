"""A2V-DiT forward vs diffusers' LTX transformer (same config, inputs, CPU); Split-CFG step vs one branch.

Ours is jitted with the audio attention off (speech=None), diffusers runs eagerly under
``torch.inference_mode``; both see the same weights and inputs and the same machine. Reported:
  ours / diffusers          (target ≤ 1.0×)
  3 branches in one pass / 1 branch   (Split-CFG batched on the batch axis; target ≤ 3.0×)
"""

from __future__ import annotations

import os

import numpy as np

from benchmarks._timing import print_table, time_fn


def add_args(p):
  p.add_argument("--layers", type=int, default=2, help="transformer blocks")
  p.add_argument("--heads", type=int, default=4, help="attention heads")
  p.add_argument("--head-dim", type=int, default=64, help="head width (model width = heads × head-dim)")
  p.add_argument("--channels", type=int, default=128, help="latent channels")
  p.add_argument("--caption-channels", type=int, default=256, help="text embedding width")
  p.add_argument("--frames", type=int, default=5, help="latent frames T (reference included)")
  p.add_argument("--height", type=int, default=8, help="latent height")
  p.add_argument("--width", type=int, default=8, help="latent width")
  p.add_argument("--text-len", type=int, default=16, help="prompt tokens")
  p.add_argument("--batch", type=int, default=1, help="batch of one branch")
  p.add_argument("--repeats", type=int, default=10, help="timed runs (median reported)")
  p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
  p.add_argument("--platform", default="cpu", help="jax platform (cpu: the same CPU as torch)")


def run(args):
  import jax
  jax.config.update("jax_platforms", args.platform)
  import torch
  from diffusers import LTXVideoTransformer3DModel

  from read_jax.convert.ltx_transformer import params_from_state_dict
  from read_jax.models.a2v_dit import A2VDiT

  if args.threads:
    torch.set_num_threads(args.threads)
  dim = args.heads * args.head_dim
  torch.manual_seed(0)
  ref = LTXVideoTransformer3DModel(in_channels=args.channels, out_channels=args.channels,
                                   num_attention_heads=args.heads, attention_head_dim=args.head_dim,
                                   cross_attention_dim=dim, num_layers=args.layers,
                                   caption_channels=args.caption_channels).eval()
  model = A2VDiT(in_channels=args.channels, out_channels=args.channels, num_layers=args.layers,
                 num_heads=args.heads, head_dim=args.head_dim, cross_attention_dim=dim,
                 caption_channels=args.caption_channels, audio_dim=dim, attention="xla")
  params = params_from_state_dict({k: v.numpy() for k, v in ref.state_dict().items()}, model)
  params = jax.device_put(params)

  rng = np.random.default_rng(0)
  b3 = 3 * args.batch
  shape = (b3, args.frames, args.height, args.width, args.channels)
  x = rng.standard_normal(shape).astype(np.float32)
  t = np.concatenate([np.zeros((b3, 1)), np.full((b3, args.frames - 1), 0.6)], axis=1).astype(np.float32)
  text = rng.standard_normal((b3, args.text_len, args.caption_channels)).astype(np.float32)
  mask = np.ones((b3, args.text_len), bool)
  mask[:, args.text_len * 3 // 4:] = False

  apply = jax.jit(model.apply)

  def ours(n):
    xs, ts, texts, masks = (jax.device_put(a[:n]) for a in (x, t, text, mask))
    return lambda: apply({"params": params}, xs, ts, None, texts, masks).block_until_ready()

  hw = args.height * args.width

  def theirs(n):
    kw = dict(hidden_states=torch.from_numpy(x[:n].reshape(n, -1, args.channels)),
              encoder_hidden_states=torch.from_numpy(text[:n]),
              timestep=torch.from_numpy(np.repeat(t[:n] * 1000, hw, axis=1)),
              encoder_attention_mask=torch.from_numpy(mask[:n].astype(np.float32)),
              num_frames=args.frames, height=args.height, width=args.width,
              rope_interpolation_scale=(8 / 25, 32, 32), return_dict=False)

    def fn():
      with torch.inference_mode():
        return ref(**kw)[0]
    return fn

  # Same answer first (so the timings compare the same computation).
  got = np.asarray(apply({"params": params}, x[:args.batch], t[:args.batch], None, text[:args.batch],
                         mask[:args.batch]))
  want = theirs(args.batch)().numpy().reshape(got.shape)
  err = float(np.linalg.norm(got - want) / np.linalg.norm(want))

  # Interleaved rounds (each round runs every variant once), so load from other processes on a shared
  # machine hits all variants alike.
  fns = {(name, n): make(n) for name, make in (("read_jax (jit)", ours), ("diffusers (eager)", theirs))
         for n in (args.batch, b3)}
  runs = {k: [] for k in fns}
  for _ in range(args.repeats):
    for k, fn in fns.items():
      runs[k].append(time_fn(fn, warmup=1, repeats=1)["min"])
  rows, timings, best = [], {}, {}
  for (name, n), ts in runs.items():
    timings[name, n], best[name, n] = float(np.median(ts)), float(np.min(ts))
    rows.append({"impl": name, "batch": n, "median_ms": 1e3 * np.median(ts), "min_ms": 1e3 * np.min(ts)})
  print(f"A2V-DiT vs LTX: {args.layers} blocks, width {dim} ({args.heads}×{args.head_dim}), "
        f"x [{args.batch}, {args.frames}, {args.height}, {args.width}, {args.channels}] "
        f"({args.frames * hw} tokens), text {args.text_len}; torch threads {torch.get_num_threads()}, "
        f"{os.cpu_count()} CPUs, jax {jax.default_backend()}; relative error vs diffusers {err:.2e}")
  print_table(rows, ["impl", "batch", "median_ms", "min_ms"])
  ours1, ours3 = timings["read_jax (jit)", args.batch], timings["read_jax (jit)", b3]
  theirs1 = timings["diffusers (eager)", args.batch]
  o1, o3, d1 = (best[k] for k in (("read_jax (jit)", args.batch), ("read_jax (jit)", b3),
                                   ("diffusers (eager)", args.batch)))
  print(f"ours / diffusers (batch {args.batch}):  {ours1 / theirs1:.3f}x median, {o1 / d1:.3f}x min   "
        "(target <= 1.0x)")
  print(f"Split-CFG 3 branches / 1 branch:  {ours3 / ours1:.3f}x median, {o3 / o1:.3f}x min   (target <= 3.0x)")
  # XLA's own count of the compiled programs' work: deterministic, unlike wall time on a shared machine.
  cost = {}
  for n in (args.batch, b3):
    c = apply.lower({"params": params}, *(a[:n] for a in (x, t)), None, text[:n], mask[:n]).compile().cost_analysis()
    cost[n] = c[0] if isinstance(c, (list, tuple)) else c
  ratio = lambda key: cost[b3].get(key, float("nan")) / cost[args.batch].get(key, float("nan"))  # noqa: E731
  print(f"Split-CFG compiled cost 3 branches / 1 branch:  flops {ratio('flops'):.3f}x, "
        f"bytes accessed {ratio('bytes accessed'):.3f}x")
