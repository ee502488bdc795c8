"""GPU check, one section per process (scripts/gpu_check.sh runs them all under time limits).

  python scripts/bench.py gpu --section attention --out DIR [--size tiny --platform cpu]

Sections: env (devices, versions), attention (our cuDNN vs XLA attention at the DiT's shapes), dit
(read_jax/bench/dit.py at full size), sample (the sampler's jitted per-clip function: compile
time, memory, seconds per clip), vae (read_jax/bench/vae.py, full 0.9.1 decoder). Each section
merges its numbers into DIR/gpu_check.json under its name: ``{"status": "started"}`` first, so a
section killed by its time limit shows as such, then its results or ``{"error": ...}``.
``--size tiny --platform cpu`` runs every section at toy sizes, to test this script without a GPU.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import os
import subprocess
import time
import traceback

import flax
import jax
import jax.numpy as jnp
import numpy as np

from read_jax.ans import sampling, solvers
from read_jax.bench import dit as dit_bench
from read_jax.bench import vae as vae_bench
from read_jax.bench.timing import time_fn
from read_jax.config import load_config
from read_jax.files import atomic_path
from read_jax.models import a2v_dit
from read_jax.nn.attention import dot_product_attention

SECTIONS = ("env", "attention", "dit", "sample", "vae")
GIB = 2 ** 30


def add_args(p):
  p.add_argument("--section", required=True, choices=SECTIONS)
  p.add_argument("--size", default="full", choices=("full", "tiny"), help="tiny: toy shapes, for a CPU dry run")
  p.add_argument("--platform", default="gpu", choices=("gpu", "cpu"))
  p.add_argument("--out", default=".", help="directory of gpu_check.json")
  p.add_argument("--repeats", type=int, default=10, help="timed runs per measurement")


def run(args) -> dict:
  """Runs one section and merges its numbers into ``args.out``/gpu_check.json; returns them."""
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # jax and torch share the GPU (read at backend start)
  jax.config.update("jax_platforms", "cuda" if args.platform == "gpu" else "cpu")
  _record(args.out, args.section, {"status": "started"})
  t0 = time.perf_counter()
  try:
    result = _SECTIONS[args.section](args)
    result["section_wall_s"] = time.perf_counter() - t0
  except Exception as e:  # recorded, then re-raised so the process exits non-zero
    _record(args.out, args.section, {"error": f"{type(e).__name__}: {e}"[:2000],
                                     "traceback": traceback.format_exc()[-4000:]})
    raise
  _record(args.out, args.section, result)
  print(f"[{args.section}] done in {result['section_wall_s']:.1f} s", flush=True)
  return result


def _record(out: str, section: str, value: dict):
  """Merge ``{section: value}`` into out/gpu_check.json (written whole, then renamed)."""
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, "gpu_check.json")
  data = {}
  if os.path.isfile(path):
    with open(path) as fh:
      data = json.load(fh)
  data[section] = value
  with atomic_path(path) as tmp:
    with open(tmp, "w") as fh:
      json.dump(data, fh, indent=1, default=str)


def _env(args) -> dict:
  versions = {}
  for name in ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "optax", "orbax-checkpoint",
               "numpy", "ml_dtypes", "torch", "diffusers", "transformers", "ml_collections", "nvidia-cudnn-cu13"):
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  result = {"versions": versions, "flax_file": flax.__file__, "jax_devices": [str(d) for d in jax.devices()],
            "jax_backend": jax.default_backend()}
  try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,memory.used,driver_version,clocks.sm",
                          "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    result["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
  except (OSError, subprocess.TimeoutExpired) as e:
    result["nvidia_smi"] = f"unavailable: {e}"
  d = jax.devices()[0]
  result["jax_device_kind"] = getattr(d, "device_kind", None)
  result["jax_memory_stats"] = d.memory_stats()
  if args.platform == "gpu":
    import torch  # optional heavy dependency
    result["torch_cuda"] = {"available": torch.cuda.is_available(), "device": torch.cuda.get_device_name(0),
                            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
  for k, v in result.items():
    print(f"{k}: {v}", flush=True)
  return result


def _attention(args) -> dict:
  """read_jax.nn.attention.dot_product_attention: each implementation vs a float32 reference, and timings.

  The text case (key padding mask ``[B, 1, 1, Lt]``) also tries the two ways cuDNN takes such a mask:
  broadcast to ``[B, 1, Lq, Lt]`` (a bias of the full score shape) and as ``key_value_seq_lengths``.
  """
  b, length, heads, head_dim, text_len = (3, 4352, 32, 64, 128) if args.size == "full" else (3, 40, 2, 8, 6)
  fast = "cudnn" if args.platform == "gpu" else "auto"  # auto is xla on a CPU: the dry run's stand-in
  keys = jax.random.split(jax.random.key(0), 5)
  q, k, v = (jax.random.normal(kk, (b, length, heads, head_dim), jnp.bfloat16) for kk in keys[:3])
  tk, tv = (jax.random.normal(kk, (b, text_len, heads, head_dim), jnp.bfloat16) for kk in keys[3:])
  # Key padding as the text cross-attention's: rows keep all, 3/4 and 1/2 of their tokens.
  valid = np.array([text_len, text_len * 3 // 4, text_len // 2])[np.arange(b) % 3]
  mask = jnp.asarray(np.arange(text_len)[None, :] < valid[:, None])[:, None, None, :]  # [B, 1, 1, Lt]
  ours = lambda impl: functools.partial(dot_product_attention, implementation=impl)  # noqa: E731
  variants = {"self": {"xla": ours("xla"), fast: ours(fast)},
              "text": {"xla": ours("xla"), fast: ours(fast),
                       f"{fast}_full_mask": lambda q, k, v, m: dot_product_attention(
                           q, k, v, jnp.broadcast_to(m, (b, 1, length, text_len)), implementation=fast),
                       f"{fast}_seq_lengths": lambda q, k, v, m: jax.nn.dot_product_attention(
                           q, k, v, key_value_seq_lengths=jnp.asarray(valid, jnp.int32),
                           implementation=None if fast == "auto" else fast)}}
  cases = {"self": (q, k, v, None), "text": (q, tk, tv, mask)}
  result = {"shape": {"B": b, "L": length, "N": heads, "K": head_dim, "L_text": text_len, "dtype": "bfloat16",
                      "text_valid": valid.tolist()}}
  print(f"attention: q [{b}, {length}, {heads}, {head_dim}] bf16; text keys {text_len} with padding mask "
        f"(valid {valid.tolist()})", flush=True)
  f32 = lambda a: a.astype(jnp.float32)  # noqa: E731
  for case, (qq, kk, vv, m) in cases.items():
    ref = np.asarray(jax.jit(ours("xla"))(f32(qq), f32(kk), f32(vv), m))
    flops = 4 * b * heads * length * kk.shape[1] * head_dim
    xla_out = None
    for name, attend in variants[case].items():
      try:
        fn = jax.jit(attend)
        out = np.asarray(fn(qq, kk, vv, m), np.float32)
        timing = time_fn(lambda: fn(qq, kk, vv, m).block_until_ready(), warmup=2, repeats=args.repeats)
        r = {"max_abs_err_vs_f32": float(np.max(np.abs(out - ref))),
             "rel_err_vs_f32": float(np.linalg.norm(out - ref) / np.linalg.norm(ref)),
             "nonfinite": int(np.sum(~np.isfinite(out))), "median_ms": 1e3 * timing["median"],
             "min_ms": 1e3 * timing["min"], "tflops": flops / timing["median"] / 1e12}
        if xla_out is None:
          xla_out = out
        else:
          r["rel_diff_vs_xla_bf16"] = float(np.linalg.norm(out - xla_out) / np.linalg.norm(xla_out))
      except Exception as e:  # one implementation failing must not hide the others
        r = {"error": f"{type(e).__name__}: {e}"[:1500]}
      result[f"{case}/{name}"] = r
      print(f"  {case:4s} {name:18s} {r}", flush=True)
  return result


def _sub_args(module, argv: list[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser()
  module.add_args(p)
  return p.parse_args(argv)


def _dit(args) -> dict:
  size = ["--size", "full"] if args.size == "full" else ["--layers", "3", "--heads", "2", "--head-dim", "16",
                                                        "--frames", "3", "--height", "4", "--width", "5"]
  attention = "cudnn,xla" if args.platform == "gpu" else "auto,xla"
  return dit_bench.run(_sub_args(dit_bench, size + ["--platform", args.platform, "--dtype", "bfloat16",
                                                    "--attention", attention, "--repeats", str(args.repeats)]))


def _vae(args) -> dict:
  size = ["--size", "full", "--frames", "129", "--height", "512", "--width", "512"] if args.size == "full" else \
      ["--size", "tiny", "--frames", "17", "--height", "64", "--width", "96"]
  return vae_bench.run(_sub_args(vae_bench, size + ["--variant", "0.9.1", "--platform", args.platform,
                                                    "--dtype", "float32,bfloat16",
                                                    "--repeats", str(max(3, args.repeats // 3))]))


def _sample(args) -> dict:
  """One clip of the production sampler (read_jax.ans.sampling.stream_clips's jitted per-clip scan)."""
  full = args.size == "full"
  cfg = load_config("a2v_dit.py" if full else "a2v_dit.py:tiny").model
  dit = a2v_dit.build_model({**cfg, "dtype": "bfloat16", "param_dtype": "bfloat16", "remat": "none",
                             "attention": "auto"})
  clip_frames, h, w, text_len, steps, cfg_mode = (16, 16, 16, 128, 8, "split") if full else (3, 3, 5, 6, 8, "split")
  t0 = time.perf_counter()
  params = a2v_dit.init_params(dit, jax.random.key(0))
  jax.block_until_ready(params)
  n_params = sum(a.size for a in jax.tree.leaves(params))
  init_s = time.perf_counter() - t0
  print(f"sampler: {dit.num_layers} blocks, {n_params / 1e9:.3f} B parameters bf16 (random init {init_s:.1f} s); "
        f"clip {clip_frames} latent frames + reference, {h}×{w} latents, {steps} steps, cfg {cfg_mode}, "
        f"attention {dit.attention}", flush=True)
  keys = jax.random.split(jax.random.key(1), 5)
  text = jax.random.normal(keys[0], (1, text_len, dit.caption_channels), jnp.float32)
  text_mask = jnp.arange(text_len)[None] < text_len * 3 // 4
  text_kv = jax.jit(lambda p, t, m: dit.apply({"params": p}, t, m, method=a2v_dit.A2VDiT.encode_text))(
      params, text, text_mask)
  denoise = a2v_dit.Denoiser(dit)
  carry = sampling.first_carry((h, w, dit.in_channels), steps)
  noise = jax.random.normal(keys[1], (clip_frames, h, w, dit.in_channels))
  z_ref = jax.random.normal(keys[2], (h, w, dit.in_channels))
  speech = jax.random.normal(keys[3], (clip_frames, dit.audio_tokens, dit.audio_dim))
  sampler = solvers.Sampler.create(steps=steps, cfg=cfg_mode)
  inputs = (sampler, (params, text_kv), sampling.ClipInputs(carry, noise, z_ref, speech))
  t0 = time.perf_counter()
  lowered = sampling.run_clip.lower(denoise, *inputs)  # the per-clip program stream_clips runs
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  print(f"  per-clip program compiled in {compile_s:.1f} s; memory_analysis: {mem}", flush=True)

  def clip():
    return jax.block_until_ready(compiled(*inputs))

  t0 = time.perf_counter()
  _, first = clip()
  first_s = time.perf_counter() - t0
  finite = bool(np.all(np.isfinite(np.asarray(first, np.float32))))
  timing = time_fn(clip, warmup=0, repeats=max(3, args.repeats // 3))
  stats = jax.devices()[0].memory_stats() or {}
  new_video_frames = 8 * (clip_frames - 1)  # each clip after the first adds f−1 latent frames
  per_clip = timing["median"]
  result = {"config": {"layers": dit.num_layers, "parameters": int(n_params), "clip_frames": clip_frames,
                       "latent_hw": [h, w], "steps": steps, "cfg": cfg_mode, "batch": 3, "text_len": text_len,
                       "attention": dit.attention, "dtype": "bfloat16"},
            "init_s": init_s, "compile_s": compile_s, "first_run_s": first_s, "clip_median_s": per_clip,
            "clip_min_s": timing["min"], "denoiser_pass_ms": 1e3 * per_clip / steps, "output_finite": finite,
            "memory_analysis": {k: getattr(mem, k, None) for k in ("argument_size_in_bytes", "output_size_in_bytes",
                                                                   "temp_size_in_bytes", "alias_size_in_bytes",
                                                                   "generated_code_size_in_bytes")},
            "peak_bytes_in_use": stats.get("peak_bytes_in_use"), "bytes_limit": stats.get("bytes_limit"),
            "new_video_frames_per_clip": new_video_frames,
            "rtf_denoiser": per_clip / (new_video_frames / 25.0),
            "rtf_denoiser_128_frames": per_clip / (8 * clip_frames / 25.0)}
  ma = result["memory_analysis"]
  gib = lambda b: None if b is None else round(b / GIB, 2)  # noqa: E731
  print(f"  per clip: median {per_clip:.3f} s, min {timing['min']:.3f} s, first run {first_s:.3f} s "
        f"({1e3 * per_clip / steps:.1f} ms per 3-branch denoiser pass); output finite: {finite}", flush=True)
  print(f"  memory GiB: args {gib(ma['argument_size_in_bytes'])}, temp {gib(ma['temp_size_in_bytes'])}, "
        f"output {gib(ma['output_size_in_bytes'])}; device peak {gib(result['peak_bytes_in_use'])} of "
        f"{gib(result['bytes_limit'])}", flush=True)
  print(f"  denoiser real-time factor: {result['rtf_denoiser']:.3f} per {new_video_frames} new video frames "
        f"({new_video_frames / 25:.2f} s); {result['rtf_denoiser_128_frames']:.3f} counting {8 * clip_frames} "
        f"frames ({8 * clip_frames / 25:.2f} s)", flush=True)
  return result


_SECTIONS = {"env": _env, "attention": _attention, "dit": _dit, "sample": _sample, "vae": _vae}
