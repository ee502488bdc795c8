"""Streaming VAE decode vs the rolling window's decode: the cost of one latent frame (8 video frames) of a live stream.

  python scripts/bench.py decode                          # demo VAE timed on this machine + full-size cost model
  python scripts/bench.py decode --full-windows 16,17 --full-dtype bfloat16 --skip-timing

Today a live session decodes each latent frame with the D clean latent frames before it and keeps the last 8
frames (``ReadPipeline.decode_rolling``): a window decode per latent frame. The streaming decoder
(``read_jax.models.vae.stream_decode_step``) decodes the new latent frame alone through each temporal conv's cache.

* **Timed** (``--vae``, default the bundled demo VAE, 64²): per latent frame, the median of ``--repeats`` calls of
  the window decode (D = ``--window`` latent frames, as ``decode_rolling``), the streaming step of the decoder made
  causal (``decoder_causal=True``; the weights do not change the cost), and the exact streaming step of the
  non-causal decoder as it is (same per-step work, after a look-ahead of ``stream_lookahead`` latent frames), and
  the streaming step of a live decoder (``--live-vae``, default the live model's: its own smaller decoder); each
  with its XLA FLOP count.
* **Full size, by XLA's cost analysis** (``--full-variant``, default LTX-Video 0.9.1, ``--full-size`` 512²): FLOPs and
  bytes accessed of the compiled programs, lowered from ShapeDtypeStructs (params from ``jax.eval_shape``, nothing
  allocated): one window decode of each of ``--full-windows`` latent frames vs one streaming step, of the decoder
  made causal and of the live decoder (``vae_variants.live_decoder``'s cut of it). Target: a streamed latent frame
  ≤ 1/8 of a window decode's FLOPs.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from read_jax.bench.timing import print_table, time_fn
from read_jax.config import load_config
from read_jax.convert.vae import load_vae
from read_jax.models import vae as vae_lib
from read_jax.models.vae import AutoencoderKLLTXVideo, compression_ratios, make_config
from read_jax.models.vae_variants import live_decoder


def add_args(parser):
  parser.add_argument("--vae", default="assets/demo/vae", help="VAE timed on this machine (diffusers layout)")
  parser.add_argument("--live-vae", default="assets/demo_live/vae",
                      help="a live decoder timed beside them (its own, smaller decoder; '' to skip)")
  parser.add_argument("--window", type=int, default=8, help="latent frames of the rolling window's decode (D)")
  parser.add_argument("--repeats", type=int, default=20, help="timed calls of each")
  parser.add_argument("--full-variant", default="0.9.1", choices=("0.9.0", "0.9.1", "0.9.5"),
                      help="full-size VAE of the cost model (configs/vae_ltx.py)")
  parser.add_argument("--full-size", type=int, default=512, help="frame side of the cost model (multiple of 32)")
  parser.add_argument("--full-windows", default="16,17", help="comma-separated window lengths (latent frames)")
  parser.add_argument("--full-dtype", default="float32", choices=("float32", "bfloat16"),
                      help="compute and parameter dtype of the cost model")
  parser.add_argument("--skip-timing", action="store_true", help="the cost model only")
  parser.add_argument("--skip-full", action="store_true", help="the timing only")


def _cost(compiled) -> dict:
  """FLOPs and bytes accessed of a compiled program (XLA's cost analysis; one dict, or a list of one)."""
  c = compiled.cost_analysis()
  c = c[0] if isinstance(c, (list, tuple)) else c
  return {"flops": float(c.get("flops", 0.0)), "bytes": float(c.get("bytes accessed", 0.0))}


def _window_fn(model, timestep):
  """``decode_rolling``'s work: decode the window, keep the last latent frame's 8 frames."""
  kt = compression_ratios(model.config)[1]
  return jax.jit(lambda v, z, key: model.apply(v, z, timestep, key=key, method=model.decode_latents)[:, -kt:])


def _stream_fns(model):
  step = functools.partial(vae_lib.stream_decode_apply, module=model)
  return jax.jit(functools.partial(step, stream="first")), jax.jit(functools.partial(step, stream="next"))


def timed(args) -> dict:
  """The demo VAE on this machine: ms per latent frame of the window decode and of the streaming steps."""
  noncausal, variables = load_vae(args.vae)
  cfg = noncausal.config
  causal = AutoencoderKLLTXVideo.from_config(make_config({**cfg.__dict__, "decoder_causal": True}))
  ks, kt = compression_ratios(cfg)
  side = load_config("demo.py").pipeline.resolution // ks if args.vae == "assets/demo/vae" else 2
  h = w = side
  rng = np.random.RandomState(0)
  z = jnp.asarray(rng.randn(1, max(args.window, 64), h, w, cfg.latent_channels).astype(np.float32))
  key = jax.random.key(0)
  rows, out = [], {"vae": args.vae, "latents": [h, w, cfg.latent_channels], "window": args.window,
                   "frames_per_latent": kt}

  window = _window_fn(noncausal, 0.0)
  compiled = window.lower(variables, z[:, :args.window], key).compile()
  r = time_fn(lambda: compiled(variables, z[:, :args.window], key).block_until_ready(), warmup=2,
              repeats=args.repeats)
  rows.append({"decode": f"window of {args.window} latents, keep 8 frames", "ms_per_latent": 1e3 * r["median"],
               "min_ms": 1e3 * r["min"], **_cost(compiled)})

  streams = [("stream, causal decoder", causal, variables),
             (f"stream, non-causal (exact, look-ahead {vae_lib.stream_lookahead(cfg)})", noncausal, variables)]
  if args.live_vae and os.path.isdir(args.live_vae):
    live, live_variables = load_vae(args.live_vae)
    sizes = live.config.decoder_block_out_channels, live.config.decoder_layers_per_block
    streams.append((f"stream, live decoder (widths {list(sizes[0])}, resnets {list(sizes[1])})", live, live_variables))
    out["live_vae"] = args.live_vae
  for name, model, params in streams:
    plan = vae_lib.stream_plan(model.config)
    first, step = _stream_fns(model)
    state = vae_lib.stream_decode_init(model, 1, h, w)
    state, _ = first(params, state, z[:, :plan.prime_latents])
    compiled = step.lower(params, state, z[:, :1]).compile()
    i = plan.prime_latents

    def one():
      nonlocal state, i
      state, frames = compiled(params, state, z[:, i % z.shape[1]:i % z.shape[1] + 1])
      frames.block_until_ready()
      i += 1

    r = time_fn(one, warmup=2, repeats=args.repeats)
    rows.append({"decode": name, "ms_per_latent": 1e3 * r["median"], "min_ms": 1e3 * r["min"], **_cost(compiled)})
  base = rows[0]
  for row in rows:
    row["vs_window"] = row["ms_per_latent"] / base["ms_per_latent"]
    row["flops_vs_window"] = row["flops"] / base["flops"]
  print(f"== timed: {args.vae}, latents {h}×{w}×{cfg.latent_channels}, {jax.devices()[0].platform} "
        f"({jax.device_count()} devices), ms per latent frame (8 video frames), medians of {args.repeats}")
  print_table(rows, ["decode", "ms_per_latent", "min_ms", "vs_window", "flops", "flops_vs_window"])
  out["rows"] = rows
  return out


def full_size_cost(args) -> dict:
  """FLOPs and bytes per latent frame of the full-size VAE, window vs stream, from lowered ShapeDtypeStructs."""
  dtype = jnp.dtype(args.full_dtype)
  fields = {**load_config(f"vae_ltx.py:{args.full_variant}").to_dict(), "dtype": dtype.name,
            "param_dtype": dtype.name}
  noncausal = AutoencoderKLLTXVideo.from_config(fields)
  causal = AutoencoderKLLTXVideo.from_config({**fields, "decoder_causal": True})
  cfg = noncausal.config
  ks, kt = compression_ratios(cfg)
  h = w = args.full_size // ks
  c = cfg.latent_channels
  variables = jax.eval_shape(noncausal.init, jax.random.key(0), jnp.zeros((1, 1, ks, ks, 3), dtype),
                             jnp.zeros((1,)))
  key = jax.eval_shape(lambda: jax.random.key(0))
  z = lambda n: jax.ShapeDtypeStruct((1, n, h, w, c), jnp.float32)  # noqa: E731
  timestep = 0.05 if cfg.timestep_conditioning else 0.0
  rows = []
  t0 = time.perf_counter()
  for n in (int(x) for x in args.full_windows.split(",")):
    compiled = _window_fn(noncausal, timestep).lower(variables, z(n), key).compile()
    rows.append({"decode": f"window of {n} latents ({1 + kt * (n - 1)} frames), keep 8", **_cost(compiled)})

  def streamed(model, params):
    first, step = _stream_fns(model)
    state = jax.eval_shape(lambda: vae_lib.stream_decode_init(model, 1, h, w, decode_timestep=timestep,
                                                              key=jax.random.key(0)))
    state, _ = jax.eval_shape(first, params, state, z(1))
    return _cost(step.lower(params, state, z(1)).compile()), state

  cost, state = streamed(causal, variables)
  stream = {"decode": "stream, causal decoder: one latent frame", **cost}
  cache_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(state.cache))
  rows.append(stream)
  live = AutoencoderKLLTXVideo.from_config({**fields, **live_decoder(fields), "decoder_causal": True})
  cost, _ = streamed(live, jax.eval_shape(live.init, jax.random.key(0), jnp.zeros((1, 1, ks, ks, 3), dtype),
                                          jnp.zeros((1,))))
  rows.append({"decode": "stream, the live decoder (vae_variants.live_decoder): one latent frame", **cost})
  for row in rows:
    row["flops_vs_stream"] = row["flops"] / stream["flops"]
    row["bytes_vs_stream"] = row["bytes"] / stream["bytes"]
  plan = vae_lib.stream_plan(cfg)
  print(f"== full size by XLA's cost analysis: LTX-Video {args.full_variant} VAE, {args.full_size}², {dtype.name} "
        f"(compiled in {time.perf_counter() - t0:.0f} s, nothing allocated); per latent frame (8 video frames)")
  print_table(rows, ["decode", "flops", "bytes", "flops_vs_stream", "bytes_vs_stream"])
  print(f"stream carry: {cache_bytes / 2**20:.1f} MiB per session; the non-causal decoder as it is streams exactly "
        f"with a look-ahead of {plan.lookahead} latent frames ({plan.lag_frames} video frames, "
        f"{plan.lag_frames / 25:.2f} s at 25 fps)")
  ok = all(stream["flops"] <= row["flops"] / 8 for row in rows[:-2])
  print(f"target: streamed FLOPs per latent frame ≤ 1/8 of a window decode's: {'met' if ok else 'NOT met'}")
  return {"variant": args.full_variant, "size": args.full_size, "dtype": dtype.name, "latents": [h, w, c],
          "rows": rows, "cache_bytes": cache_bytes, "noncausal_plan": plan._asdict(), "target_met": ok}


def run(args) -> dict:
  result = {}
  if not args.skip_timing:
    result["timed"] = timed(args)
  if not args.skip_full:
    result["full_size"] = full_size_cost(args)
    result["ok"] = result["full_size"]["target_met"]
  return result
