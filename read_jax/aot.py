"""Ahead-of-time compilation for TPU topologies, on a machine without a TPU.

With libtpu installed (``pip install "jax[tpu]==0.10.2"``), ``jax.experimental.topologies`` describes the
devices of any TPU slice (``"v5e:16x16"`` = v5e-256, ``"v5p:2x2x4"`` = v5p-32, i.e. 16 chips of 2
TensorCores); a mesh of those abstract devices, abstract arguments carrying ``NamedSharding``s, and
``jax.jit(f).lower(...).compile()`` give the real TPU program: its per-device ``memory_analysis()`` and
``cost_analysis()``. Nothing is allocated: the train state is ``jax.eval_shape``d.

What is compiled is exactly what runs:
  * the train step is ``Trainer(config, make_stage(config), mesh).step`` from ``read_jax.train.loop``, the
    function ``scripts/train.py`` jits, with the same state/batch shardings (logical rules of
    ``config.sharding``) and the same donation;
  * the sampling step is ``read_jax.ans.sampling.run_clip``, the per-clip function the streaming
    sampler calls (one clip of f latent frames through all Euler steps, the Split-CFG branches stacked
    on the batch axis: the denoiser sees ``[3, 1 + f, h, w, C]``), on one chip.

Roofline, per device: ``time = max(flops / peak, bytes_accessed / hbm_bandwidth)``, MFU = model FLOPs /
(time · peak). XLA's cost analysis counts the body of a while loop ONCE, not once per trip (checked: the
same program with 1 or 4 sampling steps, or 2 or 4 layers, reports nearly the same FLOPs), and the train
step is loops all the way down (accumulation scan × layer scan), so ``flops`` is the analytic count
(:func:`a2v_forward_flops`; ×3 for forward + backward, ×4/3 under remat for the recomputed forward) and
the cost analysis' own numbers are reported alongside as ``cost_flops_once`` / ``bytes_accessed``
(a lower bound of the HBM traffic, for the same reason). An upper bound of what a chip can do
(no communication, perfect overlap), for comparing meshes, not a measurement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import re
import tempfile
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from read_jax import sharding
from read_jax.ans import sampling, solvers
from read_jax.ans.guidance import BRANCHES
from read_jax.convert.prompt import load_text_embedding
from read_jax.errors import ConfigError, InputError
from read_jax.models import a2v_dit
from read_jax.nn.attention import compilation_target, resolve
from read_jax.sharding import MESH_AXES
from read_jax.train.loop import Trainer
from read_jax.train.stages import make_stage

GiB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Chip:
  """Per-chip peak numbers (Google Cloud "TPU system architecture" pages, per chip, bf16 dense)."""

  name: str  # marketing name
  peak_flops: float  # bf16 FLOP/s
  hbm_bandwidth: float  # bytes/s
  hbm_bytes: int  # HBM capacity; the compiler's own limit (reported when a program does not fit) is a bit lower


# Sources: cloud.google.com/tpu/docs/{v5e,v5p,v4,v6e}. The pages give HBM as "16 GB" / "95 GB" / "32 GiB" /
# "32 GB"; we read them as GiB (the compiler's error messages report v5e's usable HBM as 15.75G).
CHIPS: dict[str, Chip] = {
    "v5e": Chip("TPU v5e", 197e12, 819e9, 16 * GiB),
    "v5p": Chip("TPU v5p", 459e12, 2765e9, 95 * GiB),
    "v4": Chip("TPU v4", 275e12, 1200e9, 32 * GiB),
    "v6e": Chip("TPU v6e", 918e12, 1640e9, 32 * GiB),
}

_TOPOLOGY = re.compile(r"(v\d+[a-z]*):(\d+(?:x\d+)*)")


class DoesNotFitError(RuntimeError):
  """The program needs more HBM per device than the chip has; the message names the largest buffers."""


def libtpu_available() -> bool:
  return importlib.util.find_spec("libtpu") is not None


def quiet_libtpu_env() -> None:
  """Stop libtpu from probing the GCE metadata server for a TPU that is not there (slow, noisy logs).

  Only for machines without a TPU: call it before the first ``get_topology_desc``. Never on a TPU VM.
  """
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-4")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # Without a TPU there is nothing to guard: let several compiling processes load libtpu at once
  # (otherwise the second one fails on /tmp/libtpu_lockfile).
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


def topology_devices(topology: str) -> tuple[list[jax.Device], Chip]:
  """The abstract devices of a TPU slice, e.g. ``"v5e:16x16"`` (v5e-256) or ``"v5p:2x2x4"`` (v5p-32)."""
  m = _TOPOLOGY.fullmatch(topology or "")
  if not m:
    raise ConfigError(f"--topology {topology!r}: expected <chip>:<AxB[xC]> chips, e.g. v5e:16x16 or v5p:2x2x4")
  family, dims = m.group(1), [int(d) for d in m.group(2).split("x")]
  if family not in CHIPS:
    raise ConfigError(f"--topology {topology!r}: chip {family!r} is not one of {sorted(CHIPS)}")
  if not libtpu_available():
    raise InputError("AOT compilation for TPU needs libtpu: pip install 'jax[tpu]==0.10.2'")
  from jax.experimental import topologies
  try:
    desc = topologies.get_topology_desc(platform="tpu", topology_name=topology)
  except Exception as e:  # noqa: BLE001  (JaxRuntimeError)
    if "chips_per_host_bounds" not in str(e):
      raise ConfigError(f"--topology {topology!r}: libtpu rejects it: {e}") from None
    # Slices smaller than one host (v5e:1x1, v5e:1x2): the whole slice is one host.
    bounds = tuple(dims + [1] * (3 - len(dims)))
    desc = topologies.get_topology_desc(platform="tpu", topology_name=topology, chips_per_host_bounds=bounds)
  return list(desc.devices), CHIPS[family]


def parse_mesh(spec: str) -> dict[str, int]:
  """``"data=1,fsdp=64,tensor=4"`` → {"data": 1, "fsdp": 64, "tensor": 4}; omitted axes are 1."""
  out = {a: 1 for a in MESH_AXES}
  for item in filter(None, spec.split(",")):
    name, sep, value = item.partition("=")
    if not sep or name not in MESH_AXES or not re.fullmatch(r"-?\d+", value):
      raise ConfigError(f"--mesh {spec!r}: items look like data=4,fsdp=16,tensor=4 (axes {MESH_AXES})")
    out[name] = int(value)
  return out


@contextlib.contextmanager
def tracing_for_tpu():
  """Trace for a TPU target from a host without one.

  * ``read_jax.nn.attention`` picks implementations for ``"tpu"`` (``attention="auto"`` → splash), not
    for the host's default backend (``cpu``).
  * ``jax.ensure_compile_time_eval`` blocks are staged instead of run eagerly: under
    ``jax.set_mesh(<mesh of abstract TPU devices>)`` eager evaluation would try to *run* on those
    devices (there are none). Staged, the same values are computed inside the compiled program (XLA
    constant-folds them), so the program is the same computation.
  """

  saved = jax.ensure_compile_time_eval
  jax.ensure_compile_time_eval = contextlib.nullcontext
  try:
    with compilation_target("tpu"):
      yield
  finally:
    jax.ensure_compile_time_eval = saved


# --- reports ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
  """What one compiled program needs, per device, and its roofline."""

  name: str  # "train_step" / "sample_clip"
  topology: str
  mesh: dict[str, int]
  chip: Chip
  argument_bytes: int  # inputs (params, optimizer state, batch) resident per device
  output_bytes: int
  alias_bytes: int  # outputs sharing a donated input's buffer
  temp_bytes: int  # activations and other scratch
  code_bytes: int  # generated code
  flops: float  # per device and step, analytic, recomputation under remat included
  bytes_accessed: float  # per device HBM traffic from the cost analysis (loop bodies counted once: a lower bound)
  model_flops: float  # per device and step, analytic, no recomputation
  cost_flops_once: float = 0.0  # the cost analysis' FLOPs (loop bodies counted once)
  largest_buffers: list[str] = dataclasses.field(default_factory=list)  # "size  shapes", when asked for
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def total_bytes(self) -> int:
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes

  @property
  def fits(self) -> bool:
    return self.total_bytes <= self.chip.hbm_bytes

  @property
  def roofline_s(self) -> float:
    return max(self.flops / self.chip.peak_flops, self.bytes_accessed / self.chip.hbm_bandwidth)

  @property
  def mfu(self) -> float:
    return self.model_flops / (self.roofline_s * self.chip.peak_flops) if self.roofline_s else 0.0

  def as_dict(self) -> dict[str, Any]:
    d = {k: v for k, v in dataclasses.asdict(self).items() if k != "chip"}
    d.update(chip=self.chip.name, total_bytes=self.total_bytes, hbm_bytes=self.chip.hbm_bytes, fits=self.fits,
             roofline_s=self.roofline_s, mfu=self.mfu,
             bound="compute" if self.flops / self.chip.peak_flops >= self.bytes_accessed / self.chip.hbm_bandwidth
             else "memory")
    return d

  def format(self) -> str:
    g = lambda b: f"{b / GiB:7.2f} GiB"  # noqa: E731
    mesh = ",".join(f"{k}={v}" for k, v in self.mesh.items())
    lines = [f"{self.name} on {self.topology} ({self.chip.name}), mesh {mesh}",
             f"  per device: arguments {g(self.argument_bytes)}  outputs {g(self.output_bytes)} "
             f"(aliased {g(self.alias_bytes)})  temp {g(self.temp_bytes)}  code {g(self.code_bytes)}",
             f"  total {g(self.total_bytes)} of {g(self.chip.hbm_bytes)} HBM: {'fits' if self.fits else 'DOES NOT FIT'}",
             f"  FLOPs/step per device: model {self.model_flops:.4g}, executed (with remat) {self.flops:.4g}; "
             f"cost analysis (loop bodies once) {self.cost_flops_once:.4g} FLOPs, {self.bytes_accessed:.4g} bytes",
             f"  roofline {self.roofline_s * 1e3:.1f} ms/step "
             f"({'compute' if self.flops / self.chip.peak_flops >= self.bytes_accessed / self.chip.hbm_bandwidth else 'memory'}"
             f"-bound), MFU {100 * self.mfu:.1f}%"]
    lines += [f"  {k}: {v}" for k, v in self.extra.items()]
    if self.largest_buffers:
      lines.append("  largest buffers (size, shapes of the values sharing it):")
      lines += ["    " + b for b in self.largest_buffers]
    return "\n".join(lines)


def _report(name, topology, mesh, chip, compiled, model_flops, executed_flops, extra=None, buffers=()) -> Report:
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return Report(name=name, topology=topology, mesh=dict(mesh), chip=chip,
                argument_bytes=int(mem.argument_size_in_bytes), output_bytes=int(mem.output_size_in_bytes),
                alias_bytes=int(mem.alias_size_in_bytes), temp_bytes=int(mem.temp_size_in_bytes),
                code_bytes=int(mem.generated_code_size_in_bytes), flops=float(executed_flops),
                bytes_accessed=float(cost.get("bytes accessed", 0.0)), model_flops=float(model_flops),
                cost_flops_once=float(cost.get("flops", 0.0)), largest_buffers=list(buffers),
                extra=dict(extra or {}))


def _compile(lowered, what: str, buffers: int = 0):
  """``(lowered.compile(), the buffers largest buffers)``; out of memory raises a DoesNotFitError naming them.

  XLA:TPU's error only gives the total ("HLO temporaries (24.03G) exceeds available HBM (15.75G)"), so
  an out-of-memory program is compiled once more with an XLA dump, whose ``*memory-usage-report.txt``
  (written before the failure) lists the buffers by size with their shapes. ``buffers`` > 0 compiles
  with the dump from the start, to name the largest buffers of a program that fits too.
  """
  report = None
  if buffers:
    result, report = _compile_with_memory_report(lowered)
  else:
    try:
      result = lowered.compile()
    except Exception as e:  # noqa: BLE001  (XlaRuntimeError / JaxRuntimeError)
      result = e
  if not isinstance(result, Exception):
    return result, largest_buffers(report or "", buffers)
  msg = str(result)
  if "RESOURCE_EXHAUSTED" not in msg and "Ran out of memory" not in msg:
    raise result
  if report is None:
    _, report = _compile_with_memory_report(lowered)
  raise DoesNotFitError(f"{what} does not fit in HBM:\n{summarize_oom(msg, report)}") from None


def _compile_with_memory_report(lowered):
  """Compile with an XLA dump: (the compiled program, or the compile error, and the memory-usage report)."""
  report = ""
  with tempfile.TemporaryDirectory(prefix="read_jax_aot_") as tmp:
    try:
      result = lowered.compile(compiler_options={"xla_dump_to": tmp})
    except Exception as e:  # noqa: BLE001  (XlaRuntimeError / JaxRuntimeError)
      result = e
    for name in sorted(os.listdir(tmp)):
      if name.endswith("memory-usage-report.txt"):
        with open(os.path.join(tmp, name)) as f:
          report = f.read()
        break
  return result, report


def largest_buffers(memory_report: str, top: int = 8) -> list[str]:
  """The ``top`` largest buffers of an XLA memory-usage report, as "size  shapes" lines.

  Report lines look like ``  13.55GiB( 77%);    6.77GiB;  0;  7; bf16[3,32,4352,4352], f32[...]``
  (cumulative; size; offset; values sharing the buffer; their shapes), largest first.
  """
  rows = []
  for line in memory_report.splitlines():
    parts = [p.strip() for p in line.split(";")]
    if len(parts) >= 5 and re.fullmatch(r"[\d.]+[KMG]?i?B", parts[1]):
      rows.append(f"{parts[1]:>10}  {parts[4][:200]}")
  return rows[:top]


def summarize_oom(msg: str, memory_report: str = "", top: int = 8) -> str:
  """XLA's out-of-memory message plus the ``top`` largest buffers of its memory-usage report."""
  out = ["  " + line.strip() for line in msg.strip().splitlines()[:12]]
  rows = largest_buffers(memory_report, top)
  if rows:
    out.append("  largest buffers per device (size, shapes of the values sharing it):")
    out += ["    " + r for r in rows]
  return "\n".join(out)


# --- model FLOPs ------------------------------------------------------------------------------------


def a2v_forward_flops(model_cfg, frames: int, height: int, width: int, text_len: int) -> float:
  """Matmul + attention FLOPs of one A2V-DiT forward pass, one example (2 FLOPs per multiply-add).

  Per block, per video token (L = frames·h·w tokens, D = N·K): attn1 q/k/v/out 4·D², attn2 q/out
  2·D², audio q/out 2·D² (frames 1…f only), FF 8·D²; self-attention scores and values 2·L·D each,
  text attention 2·Lt·D each; text/audio keys/values on their own (few) tokens. Elementwise work and the
  SpeechAE (under 1% at the paper's sizes) are not counted.
  """
  m = model_cfg
  d = m.num_heads * m.head_dim
  tokens = frames * height * width
  audio_tokens = (frames - 1) * height * width
  per_block = (2 * tokens * 14 * d * d  # attn1 q/k/v/out 4·D² + attn2 q/out 2·D² + FF D→4D→D 8·D²
               + 2 * audio_tokens * 2 * d * d  # audio q/out
               + 2 * 2 * text_len * d * d  # text k/v
               + 2 * 2 * (frames - 1) * m.audio_tokens * m.audio_dim * d  # audio k/v
               + 2 * 2 * tokens * tokens * d  # self-attention QKᵀ and PV
               + 2 * 2 * tokens * text_len * d  # text attention
               + 2 * 2 * audio_tokens * m.audio_tokens * d)  # audio attention
  io = 2 * tokens * d * (m.in_channels + m.out_channels) + 2 * frames * 6 * d * d
  return m.num_layers * per_block + io


def a2v_train_flops(config, examples: int) -> float:
  """Model FLOPs of one train step on ``examples`` examples: 3 × forward (forward + 2× backward), plus the
  frozen teacher's forward rows in a distillation step (3 for Split CFG, 2 for a progressive round's substeps)."""
  d = config.data
  text_len = _text_len(config)
  passes = 3.0
  if config.get("stage") == "distill":
    passes += 3.0 if config.distill.mode == "guidance" else 2.0
  return passes * examples * a2v_forward_flops(config.model, 1 + d.latent_frames, d.latent_height, d.latent_width,
                                            text_len)


def _text_len(config) -> int:
  path = config.text.path if "text" in config else ""
  if not path:
    return 1  # no prompt file: one masked zero token (read_jax.convert.load_text_embedding without a file)
  return int(load_text_embedding(path, config.model.caption_channels)[0].shape[1])


# --- train step -------------------------------------------------------------------------------------


def _abstract(tree, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings)


def compile_train_step(config, topology: str, devices: Sequence[jax.Device] | None = None,
                       chip: Chip | None = None, *, buffers: int = 0) -> Report:
  """AOT-compile ``scripts/train.py``'s train step for ``config`` on the TPU slice ``topology``.

  ``config.mesh`` picks the mesh (one axis may be -1); the global batch is ``config.data.batch_size``.
  Raises :class:`DoesNotFitError` when the program needs more HBM than a chip has. ``buffers`` > 0: the
  report also lists that many of the largest buffers per device (compiled with an XLA dump).
  """

  if devices is None:
    devices, chip = topology_devices(topology)
  mesh = sharding.make_mesh(config.mesh, devices)
  with tracing_for_tpu():
    trainer = Trainer(config, make_stage(config), mesh)
  replicated = NamedSharding(mesh, P())
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=trainer.batch_shardings[k])
           for k, v in trainer.batch_spec.items()}
  key = jax.eval_shape(lambda: jax.random.key(0))
  key = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=replicated)
  with trainer.context(), tracing_for_tpu():
    lowered = trainer.step.lower(trainer.abstract_state, batch, key)
  compiled, largest = _compile(lowered, f"the train step on {topology} with mesh {dict(mesh.shape)}", buffers)
  n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(trainer.abstract_state.params))
  # Examples per data×fsdp shard in one micro-batch: the per-chip batch.
  per_chip = config.data.batch_size / (mesh.shape["data"] * mesh.shape["fsdp"] * config.train.accum_steps)
  model_flops = a2v_train_flops(config, config.data.batch_size) / mesh.size if "latent_frames" in config.data else 0.0
  remat = config.model.get("remat", "none")
  executed = model_flops * (4.0 / 3.0 if remat != "none" else 1.0)  # remat recomputes the forward once
  rep = _report("train_step", topology, mesh.shape, chip, compiled, model_flops, executed,
                extra={"params": n_params, "global_batch": config.data.batch_size,
                       "per_chip_batch": per_chip, "accum_steps": config.train.accum_steps,
                       "remat": config.model.get("remat", "n/a"), "dtype": config.model.get("dtype", "n/a"),
                       "attention": _tpu_attention(config.model)}, buffers=largest)
  rep.compiled = compiled
  rep.trainer = trainer
  return rep


def _tpu_attention(model_cfg) -> str:
  """The self-attention implementation ``model_cfg.attention`` resolves to on TPU ("auto" → "splash")."""
  if "attention" not in model_cfg:
    return "n/a"
  with compilation_target("tpu"):
    return resolve(model_cfg.attention)


# --- sampling step ----------------------------------------------------------------------------------


def configure(config, topology: str, mesh: str | None = None, per_device_batch: int = 0):
  """``(devices, chip)`` of ``topology``, with ``config`` (unlocked here) set to the ``--mesh`` spec and, when
  ``per_device_batch`` > 0, the global batch it implies. A mesh that does not fit the slice fails here, in
  seconds, not in the middle of a compile."""
  mesh_axes = parse_mesh(mesh) if mesh else {}
  devices, chip = topology_devices(topology)
  with config.unlocked():
    config.mesh.update(mesh_axes)
    built = sharding.make_mesh(config.mesh, devices)
    if per_device_batch:
      shards = built.shape["data"] * built.shape["fsdp"]
      config.data.batch_size = per_device_batch * config.train.accum_steps * shards
  return devices, chip


def compile_sample_clip(config, topology: str, devices: Sequence[jax.Device] | None = None, chip: Chip | None = None,
                        *, clip_frames: int = 16, steps: int = 8, cfg: str = "split", text_len: int | None = None,
                        buffers: int = 0) -> Report:
  """AOT-compile the sampler's per-clip function (``sampling.run_clip``) on ONE chip of ``topology``.

  One clip of ``clip_frames`` latent frames (+ z_R) at ``config.data``'s latent size through ``steps``
  Euler steps, CFG ``cfg`` (split: 3 branches → the denoiser sees [3, 1 + f, h, w, C]). ``buffers`` as
  in :func:`compile_train_step`.
  """

  if devices is None:
    devices, chip = topology_devices(topology)
  mesh = Mesh(np.asarray(devices[:1]).reshape(1, 1, 1), ("data", "fsdp", "tensor"))
  rep = NamedSharding(mesh, P())
  m, d = config.model, config.data
  if config.get("stage") == "distill":  # the student samples: one row per step, its own step count
    m = ml_collections.ConfigDict({**m.to_dict(), "guidance_embeds": True})
    cfg = "distilled"
    if config.distill.mode == "progressive":
      steps = int(config.distill.student_steps)
  model = a2v_dit.build_model(m)
  text_len = _text_len(config) if text_len is None else text_len
  text = jax.ShapeDtypeStruct((1, text_len, m.caption_channels), jnp.float32)
  mask = jax.ShapeDtypeStruct((1, text_len), jnp.bool_)
  with tracing_for_tpu():
    dit = a2v_dit.param_shapes(model)
    kv = jax.eval_shape(lambda p, t, k: model.apply({"params": p}, t, k, method=a2v_dit.A2VDiT.encode_text),
                        dit, text, mask)
  params = (dit, kv)  # a2v_dit.denoise: the prompt's per-block K/V ride in params, as in generation
  h, w, c = d.latent_height, d.latent_width, m.in_channels
  sds = lambda shape, dtype=jnp.float32: jax.ShapeDtypeStruct(shape, dtype, sharding=rep)  # noqa: E731
  params = jax.tree.map(lambda a: sds(a.shape, a.dtype), params)
  carry = sampling.ClipCarry(motion=sds((steps, h, w, c)), first=sds((), jnp.bool_))
  inputs = sampling.ClipInputs(carry, sds((clip_frames, h, w, c)), sds((h, w, c)),
                               sds((clip_frames, m.audio_tokens, m.audio_dim)))
  sampler = solvers.Sampler(schedule=sds((steps + 1,)), guidance=sds((2,)), cfg=cfg, solver="euler")
  # No jax.set_mesh here: every argument carries its (one-chip) sharding.
  with tracing_for_tpu():
    lowered = sampling.run_clip.lower(a2v_dit.Denoiser(model), sampler, params, inputs)
  branches = BRANCHES[cfg]
  compiled, largest = _compile(lowered, f"the {steps}-step {cfg}-CFG sampling of one clip on one {chip.name}",
                               buffers)
  flops = steps * branches * a2v_forward_flops(m, 1 + clip_frames, h, w, text_len)
  report = _report("sample_clip", topology.split(":")[0] + ":1 chip", {"data": 1, "fsdp": 1, "tensor": 1}, chip,
                   compiled, flops, flops, extra={"denoiser_batch": [branches, 1 + clip_frames, h, w, c], "steps": steps,
                                           "dtype": m.dtype, "param_dtype": m.param_dtype,
                                           "attention": _tpu_attention(m)}, buffers=largest)
  report.compiled = compiled
  return report
