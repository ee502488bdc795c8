"""The metric networks' published PyTorch weights → safetensors files their ``load_*`` read.

FID, FVD and Sync-C/D are only comparable with published numbers on the published weights, and those ship
as PyTorch pickles. Each file is opened once by ``read_jax.convert.pth.read_state_dict`` (the package's one
``torch.load``, with ``weights_only=True``: tensors only, no code runs), checked against the Flax network by
its converter, and written as a safetensors file; from then on everything reads that.

  network         published file                            format              loaded by
  fid_inception   pt_inception-2015-12-05-6726825d.pth      state dict          inception.load_inception
                  (pytorch-fid's FID_WEIGHTS_URL: torchvision Inception3 names, ``fc.*`` of 1008 classes)
  i3d             i3d_pretrained_400.pt                     state dict          i3d.load_i3d
                  (cd-fvd's ``load_i3d_model``: ``InceptionI3d(400).load_state_dict(torch.load(path))``)
  syncnet         syncnet_v2.model                          state dict          syncnet.load_syncnet
                  (syncnet_python's ``loadParameters``: copies ``loaded_state.items()`` into ``S().state_dict()``)

A written file holds exactly the tensors its converter reads, in the torch layout and names
``torch_state_shapes()`` lists (conv weights [O, I, *kernel]); what the converter ignores (the FID
classifier ``fc.*``, BatchNorm step counters) is left out. Beside them ``hashes.json`` records, per
network, the source file's name and sha256, the written file's sha256, and its tensor and value counts.

  import_metric_weights({"i3d": "i3d_pretrained_400.pt"}, "weights/")   → the manifest of the written files
  import_metric_weights("downloads/", "weights/")    every published file found in a folder by its name
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from read_jax import cli
from read_jax.convert.pth import read_state_dict
from read_jax.errors import CheckpointError, InputError
from read_jax.eval import i3d, inception, syncnet
from read_jax.files import atomic_path, file_sha256, flatten, read_json, write_safetensors

MANIFEST = "hashes.json"  # beside the written files


class MetricNetwork(NamedTuple):
  """One metric network's published weights and the functions that turn them into Flax variables."""
  published: str  # the published file's name (how a folder is searched)
  what: str  # for messages
  from_torch: Callable[[Mapping], dict]  # state dict → Flax variables; checks every key and shape
  load: Callable[[str], dict]  # safetensors file → Flax variables (through from_torch)
  torch_shapes: Callable[[], dict]  # {torch key: torch shape} from_torch reads


NETWORKS = {
  "fid_inception": MetricNetwork("pt_inception-2015-12-05-6726825d.pth", "FID Inception (pytorch-fid)",
                                 inception.inception_params_from_torch, inception.load_inception,
                                 inception.torch_state_shapes),
  "i3d": MetricNetwork("i3d_pretrained_400.pt", "FVD I3D (cd-fvd)", i3d.i3d_params_from_torch, i3d.load_i3d,
                       i3d.torch_state_shapes),
  "syncnet": MetricNetwork("syncnet_v2.model", "SyncNet (syncnet_python)", syncnet.syncnet_params_from_torch,
                           syncnet.load_syncnet, syncnet.torch_state_shapes),
}


def find_published(folder: str) -> dict[str, str]:
  """{network: path} of the published files present in ``folder`` under their published names."""
  if not os.path.isdir(folder):
    raise InputError(f"{folder}: not a directory")
  found = {name: os.path.join(folder, net.published) for name, net in NETWORKS.items()
           if os.path.isfile(os.path.join(folder, net.published))}
  if not found:
    names = ", ".join(net.published for net in NETWORKS.values())
    raise CheckpointError(f"{folder}: none of the published metric weight files is there (looked for {names})")
  return found


@functools.cache
def _key_set(name: str) -> frozenset:
  return frozenset(NETWORKS[name].torch_shapes())


def _looks_like(state: Mapping) -> str | None:
  """The network whose every tensor name ``state`` holds (for the hint on a file given as the wrong one)."""
  keys = set(state)
  return next((name for name in NETWORKS if _key_set(name) <= keys), None)


def to_torch_layout(name: str, variables: Mapping) -> dict[str, np.ndarray]:
  """Flax variables of network ``name`` → {torch key: float32 array [O, I, *kernel]}, as its converter reads.

  The converters build the Flax tree in the order of ``torch_state_shapes()`` (both walk one abstract init),
  so the two line up leaf for leaf; every shape is checked here and the caller reads the result back."""
  shapes = NETWORKS[name].torch_shapes()
  leaves = flatten(variables)
  if len(leaves) != len(shapes):
    raise AssertionError(f"{name}: {len(leaves)} Flax leaves vs {len(shapes)} torch tensors")
  out = {}
  for (key, shape), (path, value) in zip(shapes.items(), leaves.items()):
    value = np.asarray(value, np.float32)
    if value.ndim >= 2:  # [*kernel, I, O] → [O, I, *kernel]
      value = value.transpose(value.ndim - 1, value.ndim - 2, *range(value.ndim - 2))
    if value.shape != tuple(shape):
      raise AssertionError(f"{name}: {path} {value.shape} does not line up with {key} {tuple(shape)}")
    out[key] = np.ascontiguousarray(value)
  return out


def _convert(name: str, path: str) -> tuple[dict, dict[str, np.ndarray]]:
  """(Flax variables, torch-layout tensors to write) of one published file; a mismatch names the file."""
  net = NETWORKS[name]
  state = read_state_dict(path)
  try:
    variables = net.from_torch(state)
  except CheckpointError as err:
    other = _looks_like(state)
    hint = f" (it holds the {NETWORKS[other].what} weights: give it as {other})" if other and other != name else ""
    raise CheckpointError(f"{path}: not the {net.what} weights{hint}: {err}") from None
  return variables, to_torch_layout(name, variables)


def _same(a: Mapping, b: Mapping) -> bool:
  """Whether two variable trees hold the same leaves, bit for bit."""
  fa, fb = flatten(a), flatten(b)
  return fa.keys() == fb.keys() and all(np.array_equal(np.asarray(fa[k]), np.asarray(fb[k])) for k in fa)


def _resolve_inputs(inputs) -> dict[str, str]:
  """{network: path} from a folder (its published files) or a mapping (unknown names refused, None dropped)."""
  if isinstance(inputs, (str, os.PathLike)):
    return find_published(os.fspath(inputs))
  unknown = sorted(set(inputs) - set(NETWORKS))
  if unknown:
    raise InputError(f"unknown metric network(s) {unknown} (known: {sorted(NETWORKS)})")
  found = {name: os.fspath(path) for name, path in inputs.items() if path is not None}
  if not found:
    raise InputError(f"no weight file given (any of {sorted(NETWORKS)})")
  return found


def import_metric_weights(inputs: Mapping[str, str] | str, out_dir: str, progress: bool = True) -> dict:
  """Convert published metric weights to ``<out_dir>/<network>.safetensors`` and record them in hashes.json.

  ``inputs``: {network: path} with networks among :data:`NETWORKS`, or a folder searched for the published
  file names. Every file is read and checked before anything is written, and all outputs (hashes.json
  included) are renamed into place together at the end, so a bad file leaves ``out_dir`` as it was. Each
  written file is read back with its ``load_*`` and must give exactly the variables of the direct
  conversion. hashes.json keeps earlier entries of networks not converted now.

  Returns the entries written now: {network: {"source", "source_sha256", "file", "sha256", "tensors",
  "parameters"}} ("parameters": the number of values, BatchNorm statistics included).
  """
  paths = _resolve_inputs(inputs)
  manifest_path = os.path.join(out_dir, MANIFEST)
  manifest = read_json(manifest_path) if os.path.exists(manifest_path) else {}
  converted = {}
  items = list(paths.items())
  for name, path in (cli.progress(items, desc="read weights", unit="file") if progress else items):
    converted[name] = (path, *_convert(name, path))
  written = {}
  with contextlib.ExitStack() as renames:  # renames only once every file is complete; hashes.json last
    manifest_tmp = renames.enter_context(atomic_path(manifest_path))
    for name, (path, variables, tensors) in converted.items():
      target = os.path.join(out_dir, f"{name}.safetensors")
      tmp = renames.enter_context(atomic_path(target))
      source_sha = file_sha256(path)
      # One metadata entry: safetensors writes its metadata map in hash order, so with several the same
      # weights would give files of different sha256 from run to run.
      write_safetensors(tmp, tensors, {"source": f"{os.path.basename(path)} sha256:{source_sha}"})
      if not _same(NETWORKS[name].load(tmp), variables):
        raise AssertionError(f"{target}: reading it back does not give the converted {name} weights")
      written[name] = {"source": os.path.basename(path), "source_sha256": source_sha,
                       "file": os.path.basename(target), "sha256": file_sha256(tmp), "tensors": len(tensors),
                       "parameters": int(sum(v.size for v in tensors.values()))}
    with open(manifest_tmp, "w") as fh:
      json.dump({**manifest, **written}, fh, indent=2, sort_keys=True)
  return written
