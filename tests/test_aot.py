"""AOT compilation for TPU topologies (read_jax/aot.py): the tiny stage-2 train step on a v5e:2x2 slice.

Needs libtpu (``pip install "jax[tpu]==0.10.2"``, done by .ci/run); skipped without it. The golden file
holds the parameter shardings of the compiled program; regenerate it (after a deliberate change of the
model's logical axis names or of config.sharding.rules) with::

  python tests/test_aot.py --write-golden
"""

import json
import os
import sys

import jax
import pytest

from read_jax import aot

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "aot_tiny_shardings.json")
TOPOLOGY = "v5e:2x2"
MESH = {"data": 1, "fsdp": 2, "tensor": 2}  # every axis but data > 1, so both param rules show up
# Per-device bound for the tiny model (≈50k params): a regression to replicated params/optimizer state
# or to a per-device full batch would not move this much, but a program that keeps every layer's
# activations or materialises a [B, N, L, L] score tensor per layer at a bigger size would.
TINY_BOUND_BYTES = 64 * 2 ** 20

pytestmark = pytest.mark.skipif(not aot.libtpu_available(),
                                reason="libtpu is not installed (pip install 'jax[tpu]==0.10.2')")


def _tiny_config(attention="xla"):
  from read_jax.config import load_config
  config = load_config("a2v_dit.py:tiny")
  config.unlock()
  config.model.attention = attention
  config.mesh.update(MESH)
  n = MESH["data"] * MESH["fsdp"]
  config.data.batch_size = config.train.accum_steps * n  # one example per batch shard and micro-batch
  config.lock()
  return config


@pytest.fixture(scope="module")
def tiny_train():
  aot.quiet_libtpu_env()
  return aot.compile_train_step(_tiny_config(), TOPOLOGY)


def _param_specs(params) -> dict[str, list]:
  """``{"dit/proj_in/kernel": [spec entries], ...}`` of a tree of shardings, JSON-friendly (golden files)."""
  out = {}
  for path, s in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
    out[name] = [list(a) if isinstance(a, tuple) else a for a in s.spec]
  return out


def _compiled_param_specs(report) -> dict:
  """Parameter shardings of the *compiled program's* inputs, as JSON-friendly lists."""
  return _param_specs(report.compiled.input_shardings[0][0].params)


@pytest.mark.slow
def test_tiny_train_step_fits_and_reports(tiny_train):
  r = tiny_train
  assert r.chip.name == "TPU v5e" and r.mesh == MESH
  assert 0 < r.total_bytes < TINY_BOUND_BYTES, r.format()
  # Params + Adam moments (3 × float32 per param), split over fsdp×tensor at best, replicated at worst.
  n = r.extra["params"]
  assert 3 * 4 * n / 4 <= r.argument_bytes, r.format()
  assert r.argument_bytes <= 3 * 4 * n + 2 ** 20, r.format()
  assert r.alias_bytes > 0  # the state is donated: the new state reuses its buffers
  assert r.model_flops > 0 and r.flops >= r.model_flops and r.roofline_s > 0 and 0 < r.mfu <= 1
  assert "DOES NOT FIT" not in r.format()


def test_param_shardings_match_logical_rules(tiny_train):
  """Every compiled param sharding is what config.sharding.rules make of the param's logical names."""
  import flax.linen as nn
  import jax
  from read_jax.sharding import _drop_indivisible, logical_rules
  trainer = tiny_train.trainer
  rules = logical_rules(trainer.config.sharding)
  key = jax.random.key(0)  # outside the mesh context: eager work there would target the abstract TPUs
  with trainer.context(), aot.tracing_for_tpu():
    boxed = jax.eval_shape(trainer.stage.init, key, trainer.batch_spec)
  compiled = _compiled_param_specs(tiny_train)
  flat = jax.tree_util.tree_flatten_with_path(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))[0]
  checked = 0
  for path, leaf in flat:
    if not isinstance(leaf, nn.Partitioned):
      continue
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    spec = _drop_indivisible(nn.logical_to_mesh_axes(leaf.names, rules), leaf.value.shape, trainer.mesh)
    want = [list(a) if isinstance(a, tuple) else a for a in spec]
    got = compiled[name]
    assert got + [None] * (len(want) - len(got)) == want + [None] * (len(got) - len(want)), name
    checked += 1
  assert checked >= 20  # the DiT's params are annotated: this is not vacuous
  assert any("tensor" in json.dumps(v) for v in compiled.values())
  assert any("fsdp" in json.dumps(v) for v in compiled.values())


def test_param_shardings_golden(tiny_train):
  if not os.path.isfile(GOLDEN):
    pytest.fail(f"golden file {GOLDEN} is missing: create it with `python tests/test_aot.py --write-golden` "
                "and review the diff")
  with open(GOLDEN) as f:
    golden = json.load(f)
  got = _compiled_param_specs(tiny_train)
  assert golden["topology"] == TOPOLOGY and golden["mesh"] == MESH
  missing, extra = sorted(set(golden["params"]) - set(got)), sorted(set(got) - set(golden["params"]))
  assert not missing and not extra, f"params changed: missing {missing[:5]}, new {extra[:5]} (regenerate: " \
                                    "python tests/test_aot.py --write-golden)"
  diff = {k: (golden["params"][k], got[k]) for k in got if golden["params"][k] != got[k]}
  assert not diff, f"param shardings differ from {GOLDEN} (golden, compiled): {diff}"


@pytest.mark.slow
def test_auto_attention_compiles_the_splash_kernel_for_tpu():
  """From this CPU host, attention="auto" picks splash for the TPU target and its Pallas kernel lowers.

  The kernel runs per device in a shard_map (batch over fsdp, heads over tensor): no gathered q/k/v.
  """
  r = aot.compile_train_step(_tiny_config(attention="auto"), TOPOLOGY)
  assert r.extra["attention"] == "splash"
  hlo = r.compiled.as_text()
  assert "splash_mha_fwd" in hlo and hlo.count("tpu_custom_call") >= 2, "no splash kernel forward + backward"
  assert 0 < r.total_bytes < TINY_BOUND_BYTES, r.format()


def test_bad_topology_and_mesh_errors():
  with pytest.raises(ValueError, match="--topology 'v9x:2x2'"):
    aot.topology_devices("v9x:2x2")
  with pytest.raises(ValueError, match="expected <chip>"):
    aot.topology_devices("v5litepod-16")
  with pytest.raises(ValueError, match="--mesh"):
    aot.parse_mesh("data=2,model=4")
  assert aot.parse_mesh("fsdp=4") == {"data": 1, "fsdp": 4, "tensor": 1}


_OOM = "RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO temporaries (24.03G) " \
       "exceeds available HBM (15.75G)."
# The head of a real XLA:TPU memory-usage report (the full-size Split-CFG sampling step on one v5e).
_REPORT = """Memory Space: default (color=0)
Total bytes: 25800668672 (24.03GiB)
  cumulative_size;       size;       offset; used_by_n_values; shapes_list
  ------------------------------------------------------------
    6.77GiB( 38%);    6.77GiB;   7272923136;                2; bf16[3,4352,2048], f32[3,32,4352,4352]
   13.55GiB( 77%);    6.77GiB;            0;                7; bf16[3,32,4352,4352], bf16[3,4352,8192]
   14.30GiB( 81%);  768.00MiB;  14545846272;                1; bf16[24,2048,8192]
   15.23GiB( 86%);  192.00MiB;  16156459008;                1; bf16[24,2048,2048]
"""


def test_out_of_memory_message_names_largest_buffers():
  s = aot.summarize_oom(_OOM, _REPORT, top=3)
  assert "HLO temporaries (24.03G) exceeds available HBM (15.75G)" in s
  assert "f32[3,32,4352,4352]" in s and "768.00MiB" in s and "bf16[24,2048,8192]" in s
  assert "192.00MiB" not in s  # top=3
  assert s.index("6.77GiB") < s.index("768.00MiB")
  assert "largest" not in aot.summarize_oom(_OOM)  # no report: the message alone
  assert [r.split()[0] for r in aot.largest_buffers(_REPORT, top=2)] == ["6.77GiB", "6.77GiB"]


def _write_golden():
  aot.quiet_libtpu_env()
  r = aot.compile_train_step(_tiny_config(), TOPOLOGY)
  os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
  with open(GOLDEN, "w") as f:
    json.dump({"topology": TOPOLOGY, "mesh": MESH, "params": _compiled_param_specs(r)}, f, indent=1, sort_keys=True)
    f.write("\n")
  print(f"wrote {GOLDEN} ({len(_compiled_param_specs(r))} params)")


if __name__ == "__main__":
  if sys.argv[1:] != ["--write-golden"]:
    sys.exit("usage: python tests/test_aot.py --write-golden")
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  _write_golden()
