"""Cost model of live generation at full size: FLOPs and memory per second of video, sessions per device.

  python scripts/bench.py cost [--json PATH]

Nothing is allocated and nothing runs: every program is lowered from ShapeDtypeStructs (params from
``jax.eval_shape``) and XLA's cost analysis of the lowered HLO counts its FLOPs (the A2V-DiT's block stack traced
unrolled, :func:`read_jax.models.a2v_dit.unrolled_layers`, because the analysis counts a loop body once). The
models are the paper's: configs/a2v_dit.py (24 blocks × 2048, 17 × 16 × 16 latents, a 128-token prompt, bf16),
LTX-Video 0.9.1's VAE at 512² (configs/vae_ltx.py:0.9.1) and Whisper tiny + the SpeechAE on the live speech window
(a 4 s window per latent frame). A latent frame is 8 video frames, 0.32 s; a second of video is 3.125 of them.
Live sessions stream their frames through the live decoder (configs/vae_ltx_causal.py:live: the released decoder
cut to half width with no resnets in its full-resolution block, causal); the released decoder made causal is
the row beside it.

One row per mode (docs/design.md §3.10):

  clip     the paper's sampler: clips of 16 latent frames (15 new), 8 steps × Split CFG (3 rows of the 17-frame
           window), a 16-latent window decode per clip
  rolling  the rolling window as built (read_jax/ans/rolling.py, W = 1): per latent frame steps / W = 8 Split-CFG
           passes over the whole 17-frame window and a window decode of D = 16 latent frames
  causal   the cached causal window (read_jax/ans/causal.py) with the 2-step student (one row, guidance
           distilled in): per latent frame 2 one-frame passes against the KV cache + 1 at t = 0 for the cache, and
           one step of the streaming live decoder
  causal, released decoder   the same with the released decoder made causal (configs/vae_ltx_causal.py) instead
  causal, K/V from the last step   (modelled variant) the cache fed from the last denoising pass: 2 passes

Sessions per device: the smaller of the FLOP bound (utilised FLOP/s / FLOPs per second of video; the utilisation
the project measured on the H100 for the full-size DiT forward: 17.9 TFLOP in 46.6 ms, 384 TFLOP/s of the
989 TFLOP/s bf16 peak, applied to the v5e's 197 TFLOP/s too) and the memory bound ((HBM − bf16 weights) / a
session's caches and state). Measured: the utilisation only. Everything else here is modelled.
"""

from __future__ import annotations

import functools
import json
import time

import jax
import jax.numpy as jnp

from read_jax.ans import causal as causal_lib
from read_jax.bench.timing import print_table
from read_jax.config import load_config
from read_jax.models import a2v_dit
from read_jax.models import vae as vae_lib
from read_jax.models.speech_ae import SpeechAE
from read_jax.models.vae import AutoencoderKLLTXVideo, compression_ratios
from read_jax.models.whisper import encoder_from_config, encode

LATENTS_PER_SECOND = 25 / 8  # a latent frame is 8 video frames at 25 fps
H100_MEASURED = {"flops": 17.9e12, "seconds": 0.0466}  # docs/measurements/h100_gpu_check.json: full-size forward
DEVICES = {  # bf16 dense peak FLOP/s, HBM bytes
  "h100": {"peak_flops": 989.4e12, "hbm_bytes": 80e9},
  "v5e": {"peak_flops": 197e12, "hbm_bytes": 16e9},
}


def add_args(parser):
  parser.add_argument("--clip-frames", type=int, default=16, help="f: latent frames of a clip / window")
  parser.add_argument("--latent-side", type=int, default=16, help="h = w latent side (512 / 32)")
  parser.add_argument("--text-len", type=int, default=128, help="prompt tokens")
  parser.add_argument("--clip-steps", type=int, default=8, help="clip and rolling modes' steps (Split CFG)")
  parser.add_argument("--causal-steps", type=int, default=2, help="the causal student's steps")
  parser.add_argument("--vae-variant", default="0.9.1", choices=("0.9.0", "0.9.1", "0.9.5"))
  parser.add_argument("--live-window", type=float, default=4.0, help="seconds of audio per Whisper window")


def _window_decode(model, timestep):
  """A rolling/clip window decode (``ReadPipeline.decode_rolling``'s work, as bench/decode.py lowers it)."""
  kt = compression_ratios(model.config)[1]
  return lambda v, z, key: model.apply(v, z, timestep, key=key, method=model.decode_latents)[:, -kt:]


def _flops(fn, *args) -> float:
  c = jax.jit(fn).lower(*args).cost_analysis()
  c = c[0] if isinstance(c, (list, tuple)) else c
  return float(c.get("flops", 0.0))


def _bytes(tree) -> int:
  return int(sum(a.size * jnp.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree)))


def _sds(shape, dtype=jnp.float32):
  return jax.ShapeDtypeStruct(tuple(shape), dtype)


def dit_costs(args) -> dict:
  """FLOPs of one Split-CFG pass over the window and of one cached one-frame pass, and the KV cache's bytes."""
  fields = {**load_config("a2v_dit.py").model.to_dict(), "attention": "xla", "remat": "none", "dtype": "bfloat16",
            "param_dtype": "bfloat16"}
  teacher = a2v_dit.build_model(fields)
  student = a2v_dit.build_model({**fields, "causal": True, "guidance_embeds": True})
  f, side, c = args.clip_frames, args.latent_side, teacher.in_channels
  text = _sds((1, args.text_len, teacher.caption_channels))
  out = {}
  for name, model in (("teacher", teacher), ("student", student)):
    params = a2v_dit.param_shapes(model)
    params = jax.tree.map(lambda a: _sds(a.shape, jnp.bfloat16), params)
    text_kv = jax.eval_shape(lambda p, t: model.apply({"params": p}, t, method=model.encode_text), params, text)
    out[name] = (model, (params, text_kv))
  model, params = out["teacher"]
  with a2v_dit.unrolled_layers():
    split = _flops(a2v_dit.Denoiser(model), params, _sds((3, 1 + f, side, side, c)), _sds((3, 1 + f)),
                   _sds((3, f, model.audio_tokens, model.audio_dim)))
    model, params = out["student"]
    slots = f - 1
    kv = lambda n: a2v_dit.FrameKV(*(_sds((model.num_layers, 1, n, side * side, model.dim), jnp.bfloat16),) * 2)  # noqa: E731
    view = a2v_dit.KVCacheView(kv(1), kv(slots), _sds((1, slots), jnp.int32), _sds((1, slots), jnp.bool_))
    cached = _flops(functools.partial(a2v_dit.Denoiser(model).cached), params, _sds((1, 1, side, side, c)),
                    _sds((1, 1)), _sds((1, 1, model.audio_tokens, model.audio_dim)), view, _sds((1, 2)))
  return {"split_pass": split, "cached_pass": cached, "dit_params": _bytes(out["teacher"][1][0]),
          "kv_cache_bytes": causal_lib.cache_bytes(model, f, side, side, jnp.bfloat16),
          "layers": model.num_layers, "width": model.dim}


def vae_costs(args) -> dict:
  """FLOPs of a window decode of f latent frames and of one streaming step of a causal decoder (the released one
  made causal, and the live decoder), the streams' carry and the decoders' weights, bf16."""
  fields = {**load_config(f"vae_ltx.py:{args.vae_variant}").to_dict(), "dtype": "bfloat16", "param_dtype": "bfloat16"}
  noncausal = AutoencoderKLLTXVideo.from_config(fields)
  cfg = noncausal.config
  ks, _ = compression_ratios(cfg)
  h = w = args.latent_side
  key = jax.eval_shape(lambda: jax.random.key(0))
  z = lambda n: _sds((1, n, h, w, cfg.latent_channels))  # noqa: E731
  timestep = 0.05 if cfg.timestep_conditioning else 0.0

  def init(model):
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 1, ks, ks, 3), jnp.bfloat16), jnp.zeros((1,)))

  def streamed(model) -> tuple[float, int, int]:  # FLOPs of a step, the carry's bytes, the decoder's bytes
    variables = init(model)
    first, step = (functools.partial(vae_lib.stream_decode_apply, module=model, stream=s) for s in ("first", "next"))
    state = jax.eval_shape(lambda: vae_lib.stream_decode_init(model, 1, h, w, decode_timestep=timestep,
                                                              key=jax.random.key(0)))
    state, _ = jax.eval_shape(first, variables, state, z(1))
    decoder = _bytes({k: v for k, v in variables["params"].items() if "decoder" in k})
    return _flops(step, variables, state, z(1)), _bytes(state.cache), decoder

  window = _flops(_window_decode(noncausal, timestep), init(noncausal), z(args.clip_frames), key)
  released = streamed(AutoencoderKLLTXVideo.from_config({**fields, "decoder_causal": True}))
  live_fields = load_config(f"vae_ltx_causal.py:live,variant={args.vae_variant}").model.to_dict()
  live = streamed(AutoencoderKLLTXVideo.from_config({**fields, **live_fields, "decoder_causal": True}))
  return {"window_decode": window, "stream_step": released[0], "stream_carry_bytes": released[1],
          "decoder_params": released[2], "live_stream_step": live[0], "live_carry_bytes": live[1],
          "live_decoder_params": live[2],
          "live_decoder": {k: list(live_fields[k]) for k in ("decoder_block_out_channels", "decoder_layers_per_block")}}


def speech_costs(args) -> dict:
  """FLOPs per latent frame of the live speech path: Whisper tiny on one live window, the SpeechAE encoder on its
  history window (1 + 8·2 frames; read_jax.live.history_groups)."""
  wcfg = load_config("whisper.py:tiny")
  positions = int(round(args.live_window * 50))
  encoder = encoder_from_config(wcfg).clone(window_positions=positions)
  mel = _sds((1, 2 * positions, wcfg.num_mel_bins))
  wparams = jax.eval_shape(lambda: encoder.init(jax.random.key(0), jnp.zeros(mel.shape))["params"])
  whisper = _flops(functools.partial(encode, encoder), wparams, mel)
  s = load_config("a2v_dit.py").speech_ae
  sae = SpeechAE(**s)
  speech = _sds((1, 17, s.window, s.feature_dim))
  sparams = jax.eval_shape(lambda: sae.init(jax.random.key(0), jnp.zeros(speech.shape))["params"])
  encoder_flops = _flops(lambda p, x: sae.apply({"params": p}, x, method=SpeechAE.encode), sparams, speech)
  return {"whisper_window": whisper, "speech_ae": encoder_flops}


def rows_from(dit: dict, vae: dict, speech: dict, args) -> list[dict]:
  """The per-mode rows (module docstring)."""
  f, lps = args.clip_frames, LATENTS_PER_SECOND
  clip_seconds = (f - 1) / lps  # a clip hands out f − 1 new latent frames
  other = (speech["whisper_window"] + speech["speech_ae"]) * lps
  latents = lambda frames: frames * args.latent_side ** 2 * 128 * 4  # noqa: E731  float32 latents
  n = args.causal_steps
  live_state = dit["kv_cache_bytes"] + vae["live_carry_bytes"] + latents(3)
  released_state = dit["kv_cache_bytes"] + vae["stream_carry_bytes"] + latents(3)
  rows = [
    {"mode": "clip", "dit_flops_per_video_s": args.clip_steps * dit["split_pass"] / clip_seconds,
     "decode_flops_per_video_s": vae["window_decode"] / clip_seconds, "session_memory_bytes": latents(2 * f + 1),
     "passes": f"{args.clip_steps} steps × 3 rows × {1 + f} frames per {f - 1} latent frames"},
    {"mode": "rolling", "dit_flops_per_video_s": args.clip_steps * dit["split_pass"] * lps,
     "decode_flops_per_video_s": vae["window_decode"] * lps, "session_memory_bytes": latents(2 * f + 1),
     "passes": f"{args.clip_steps} steps × 3 rows × {1 + f} frames per latent frame"},
    {"mode": "causal", "dit_flops_per_video_s": (n + 1) * dit["cached_pass"] * lps,
     "decode_flops_per_video_s": vae["live_stream_step"] * lps, "session_memory_bytes": live_state,
     "passes": f"{n} + 1 (cache, t = 0) one-frame passes × 1 row per latent frame; the live decoder",
     "weights_bytes": dit["dit_params"] + vae["live_decoder_params"]},
    {"mode": "causal, released decoder", "dit_flops_per_video_s": (n + 1) * dit["cached_pass"] * lps,
     "decode_flops_per_video_s": vae["stream_step"] * lps, "session_memory_bytes": released_state,
     "passes": f"{n} + 1 (cache, t = 0) one-frame passes × 1 row per latent frame; 0.9.1's decoder made causal"},
    {"mode": "causal, K/V from the last step (modelled)", "dit_flops_per_video_s": n * dit["cached_pass"] * lps,
     "decode_flops_per_video_s": vae["live_stream_step"] * lps, "session_memory_bytes": live_state,
     "passes": f"{n} one-frame passes × 1 row per latent frame; the live decoder",
     "weights_bytes": dit["dit_params"] + vae["live_decoder_params"]},
  ]
  util = H100_MEASURED["flops"] / H100_MEASURED["seconds"] / DEVICES["h100"]["peak_flops"]
  for row in rows:
    row["other_flops_per_video_s"] = other
    total = row["dit_flops_per_video_s"] + row["decode_flops_per_video_s"] + other
    row["flops_per_video_s"] = total
    row["vs_clip_flops"] = total / (rows[0]["dit_flops_per_video_s"] + rows[0]["decode_flops_per_video_s"] + other)
    weights = row.pop("weights_bytes", dit["dit_params"] + vae["decoder_params"])
    for name, dev in DEVICES.items():
      by_flops = util * dev["peak_flops"] / total
      by_memory = (dev["hbm_bytes"] - weights) / row["session_memory_bytes"]
      row[f"sessions_{name}"] = int(min(by_flops, by_memory))
      row[f"sessions_{name}_by_flops"] = round(by_flops, 2)
      row[f"sessions_{name}_by_memory"] = round(by_memory, 1)
  return rows


def run(args) -> dict:
  t0 = time.perf_counter()
  dit, vae, speech = dit_costs(args), vae_costs(args), speech_costs(args)
  rows = rows_from(dit, vae, speech, args)
  util = H100_MEASURED["flops"] / H100_MEASURED["seconds"] / DEVICES["h100"]["peak_flops"]
  assumptions = {"utilisation": util, "utilised_flops_h100": util * DEVICES["h100"]["peak_flops"],
                 "utilised_flops_v5e": util * DEVICES["v5e"]["peak_flops"], "devices": DEVICES,
                 "measured": "H100: 17.9 TFLOP full-size DiT forward in 46.6 ms (docs/measurements/h100_gpu_check.json)",
                 "weights_bytes_bf16": dit["dit_params"] + vae["decoder_params"], "programs": {**dit, **vae, **speech}}
  print(f"== cost model, full size (configs/a2v_dit.py, LTX-Video {args.vae_variant} VAE 512², Whisper tiny): XLA "
        f"cost analysis of lowered programs, nothing allocated ({time.perf_counter() - t0:.0f} s)")
  print(f"utilisation {util:.3f} of the bf16 peak (measured on the H100), peaks H100 989 / v5e 197 TFLOP/s, HBM "
        f"80 / 16 GB, bf16 weights {assumptions['weights_bytes_bf16'] / 1e9:.2f} GB")
  print(f"per pass: Split-CFG window {dit['split_pass'] / 1e12:.2f} TFLOP, cached one-frame {dit['cached_pass'] / 1e12:.3f}"
        f" TFLOP; decode: window of {args.clip_frames} latents {vae['window_decode'] / 1e12:.1f} TFLOP, stream step "
        f"{vae['stream_step'] / 1e12:.2f} TFLOP (released decoder, causal), {vae['live_stream_step'] / 1e12:.2f} TFLOP "
        f"(live decoder: widths {vae['live_decoder']['decoder_block_out_channels']}, resnets "
        f"{vae['live_decoder']['decoder_layers_per_block']}); KV cache {dit['kv_cache_bytes'] / 2**20:.0f} MiB, decoder "
        f"carry {vae['live_carry_bytes'] / 2**20:.0f} MiB (released: {vae['stream_carry_bytes'] / 2**20:.0f}) per "
        f"session (bf16)")
  table = [{**r, **{k: r[k] / 1e12 for k in ("dit_flops_per_video_s", "decode_flops_per_video_s",
                                              "other_flops_per_video_s", "flops_per_video_s")},
            "session_memory_bytes": r["session_memory_bytes"] / 2**20} for r in rows]
  print("TFLOP per second of video, MiB per session:")
  print_table(table, ["mode", "dit_flops_per_video_s", "decode_flops_per_video_s", "other_flops_per_video_s",
                      "vs_clip_flops", "session_memory_bytes", "sessions_h100", "sessions_v5e"])
  causal = rows[2]
  targets = {"causal_flops_le_clip": causal["flops_per_video_s"] <= rows[0]["flops_per_video_s"],
             "causal_sessions_h100_ge_32": causal["sessions_h100"] >= 32}
  print("targets (model): causal FLOPs per video second ≤ clip mode's: "
        f"{'met' if targets['causal_flops_le_clip'] else 'NOT met'}; ≥ 32 sessions per H100: "
        f"{'met' if targets['causal_sessions_h100_ge_32'] else 'NOT met'} ({causal['sessions_h100']})")
  for row in rows:  # one JSON line per mode
    print(json.dumps(row))
  return {"rows": rows, "assumptions": assumptions, "targets": targets}
