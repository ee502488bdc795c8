"""The benchmark entry (scripts/bench.py → read_jax.bench) at toy sizes: the numbers it writes have the documented
structure and are positive and finite. Not a timing test: timings belong in the benchmarks themselves."""

import importlib.util
import json
import math
import mmap
import os
import time

import numpy as np
import pytest

from read_jax.bench import long as long_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench(argv) -> int:
  spec = importlib.util.spec_from_file_location("_test_bench_script", os.path.join(ROOT, "scripts", "bench.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.main(argv)


def _positive(x) -> bool:
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_dit_side_by_side_writes_finite_ratios(tmp_path):
  pytest.importorskip("torch", reason="the PyTorch reference (pip install -e .[torch])")
  pytest.importorskip("diffusers", reason="the PyTorch reference (pip install -e .[torch])")
  out = tmp_path / "dit.json"
  code = _bench(["dit", "--layers", "1", "--heads", "2", "--head-dim", "8", "--channels", "8", "--caption-channels",
                 "8", "--frames", "2", "--height", "2", "--width", "3", "--text-len", "4", "--repeats", "1",
                 "--json", str(out)])
  assert code == 0
  result = json.loads(out.read_text())
  assert result["config"]["layers"] == 1 and result["config"]["parameters"] > 0
  assert result["rel_error_vs_diffusers"]["xla"] < 1e-4  # the timings compare the same computation
  assert set(result["median_ms"]) == {"read_jax (xla) b1", "read_jax (xla) b3", "diffusers (eager) b1",
                                      "diffusers (eager) b3"}
  assert all(_positive(v) for v in result["median_ms"].values())
  assert all(_positive(v) for v in result["xla"].values())
  assert set(result["xla"]) == {"ours_over_diffusers_b1", "ours_over_diffusers_b3", "split_cfg_3_over_1"}
  assert _positive(result["diffusers_3_over_1"])
  # XLA's own count: three CFG branches are about three times the work of one.
  assert 2.5 < result["compiled_flops"]["b3"] / result["compiled_flops"]["b1"] < 3.5


@pytest.mark.slow  # ~10 s of CPU: the demo model compiles its five programs
def test_long_run_records_memory_and_an_exact_frame_count(tmp_path):
  ckpt = os.path.join(ROOT, "assets", "demo")
  if not os.path.isfile(os.path.join(ckpt, "pipeline.json")):
    pytest.skip("the bundled demo model (assets/demo) is not in this checkout")
  out = tmp_path / "long.json"
  # 0.05 min = 75 frames: two clips of the demo model (57, then 56 more, trimmed).
  assert _bench(["long", "--ckpt", ckpt, "--minutes", "0.02,0.05", "--steps", "1", "--json", str(out)]) == 0
  result = json.loads(out.read_text())
  assert result["ok"] and result["frames"] == {"expected": 75, "decoded": 75, "exact": True,
                                               "audio_seconds": result["frames"]["audio_seconds"]}
  assert abs(result["frames"]["audio_seconds"] - 3.0) < 0.05
  assert [m["minutes"] for m in result["marks"]] == [0.02, 0.05]
  for mark in result["marks"]:
    assert all(_positive(mark[k]) for k in ("wall_s", "rss_mib", "anon_mib", "window_max_mib", "peak_mib"))
    assert mark["peak_mib"] >= mark["rss_mib"] and mark["window_max_mib"] >= mark["rss_mib"] - 1
  assert result["clips"] == 2 and len(result["series"]) == 2
  assert result["series"][0][0] < result["series"][1][0] == 0.05  # minutes of video after each clip
  assert _positive(result["wall_s"]) and _positive(result["rtf"]) and math.isfinite(result["rss_slope_mib_per_min"])


def test_rss_sampler_sees_a_peak_between_marks():
  """The per-stretch maximum catches an allocation made and freed between two marks, and the next stretch
  starts again from the current resident set."""
  with long_bench.RssSampler(interval=0.01) as sampler:
    sampler.window_max()
    before = long_bench.memory_mib()["rss_mib"]
    block = mmap.mmap(-1, 64 * 2 ** 20)  # 64 MiB of fresh pages (a heap block may reuse resident memory)
    np.frombuffer(block, np.uint8)[:] = 1  # touched
    seen = sampler.samples
    deadline = time.monotonic() + 10  # the thread samples every 10 ms while the block is alive (a loaded CPU
    while sampler.samples < seen + 3 and time.monotonic() < deadline:  # may starve it for a while)
      time.sleep(0.01)
    block.close()
    peak = sampler.window_max()
    after = sampler.window_max()
  assert peak > before + 48
  assert after < peak - 48


@pytest.mark.slow
def test_distill_bench_counts_denoiser_rows_per_clip(tmp_path):
  """bench distill at the tiny size: the teacher's 8 steps × 3 Split-CFG rows = 24 per clip, the students' steps × 1."""
  out = tmp_path / "distill.json"
  assert _bench(["distill", "--config", "demo.py:tiny", "--student-steps", "2,1", "--repeats", "1",
                 "--json", str(out)]) == 0
  rows = json.loads(out.read_text())["rows"]
  assert [(r["model"], r["steps"], r["cfg"], r["rows_per_clip"]) for r in rows] == [
      ("teacher", 8, "split", 24), ("student", 2, "distilled", 2), ("student", 1, "distilled", 1)]
  assert all(_positive(r["s_per_clip"]) and _positive(r["speedup"]) for r in rows)


@pytest.mark.slow
def test_cost_model_streams_live_sessions_through_the_live_decoder():
  """``bench.py cost``'s decoder programs at full size (XLA's counts of lowered programs, nothing allocated): the
  live decoder (configs/vae_ltx_causal.py:live) streams a latent frame for under a fifth of the released decoder's
  FLOPs; the causal row decodes with it, the row beside it with the released decoder made causal, and each row's
  totals and session counts follow from its parts as the module says (the DiT's counts given here: lowering the
  24-block model is what ``bench.py cost`` itself is for)."""
  import argparse
  from read_jax.bench import cost
  parser = argparse.ArgumentParser()
  cost.add_args(parser)
  args = parser.parse_args([])
  vae, speech = cost.vae_costs(args), cost.speech_costs(args)
  assert vae["live_decoder"] == {"decoder_block_out_channels": [128, 256, 512], "decoder_layers_per_block": [0, 6, 7, 8]}
  assert 0 < vae["live_stream_step"] < vae["stream_step"] / 5 and vae["live_carry_bytes"] < vae["stream_carry_bytes"]
  assert vae["live_decoder_params"] < vae["decoder_params"] / 3
  dit = {"split_pass": 53.6e12, "cached_pass": 1.06e12, "dit_params": 4.1e9, "kv_cache_bytes": 805306368}
  rows = {r["mode"]: r for r in cost.rows_from(dit, vae, speech, args)}
  lps = 25 / 8
  causal, released = rows["causal"], rows["causal, released decoder"]
  assert causal["decode_flops_per_video_s"] == pytest.approx(vae["live_stream_step"] * lps)
  assert released["decode_flops_per_video_s"] == pytest.approx(vae["stream_step"] * lps)
  assert causal["dit_flops_per_video_s"] == pytest.approx(3 * dit["cached_pass"] * lps)
  assert rows["causal, K/V from the last step (modelled)"]["dit_flops_per_video_s"] == pytest.approx(
      2 * dit["cached_pass"] * lps)
  util = cost.H100_MEASURED["flops"] / cost.H100_MEASURED["seconds"]
  for row in rows.values():
    total = row["dit_flops_per_video_s"] + row["decode_flops_per_video_s"] + row["other_flops_per_video_s"]
    assert row["flops_per_video_s"] == pytest.approx(total)
    assert row["sessions_h100_by_flops"] == pytest.approx(util / total, abs=0.01)
    assert row["sessions_h100"] == int(min(row["sessions_h100_by_flops"], row["sessions_h100_by_memory"]))
  weights = {"causal": dit["dit_params"] + vae["live_decoder_params"],
             "causal, released decoder": dit["dit_params"] + vae["decoder_params"]}
  for mode, w in weights.items():
    assert rows[mode]["sessions_h100_by_memory"] == pytest.approx((80e9 - w) / rows[mode]["session_memory_bytes"],
                                                                  abs=0.1)
  assert causal["sessions_h100"] > released["sessions_h100"]
