"""scripts/convert.py import-metric-weights: the published FID / FVD / SyncNet PyTorch weights → safetensors.

Nothing is downloaded: each reference network (pytorch-fid's FID Inception, cd-fvd's InceptionI3d, syncnet_python's
S) is built with random weights, BatchNorm statistics included (defaults of 0 and 1 everywhere would hide a
swapped tensor), and its state dict saved under the published file name, as the published files are. The
converted files must load (``load_*``) to exactly the variables of a direct conversion of the state dict,
hashes.json must hold the files' real sha256, and every bad input must be one ``error:`` line, exit code 2,
with the output folder left as it was. Running the networks is left to tests/test_eval_*.py (I3D needs
≥ 193 px and ≥ 9 frames); here only SyncNet's small audio tower runs, against the reference.
"""

import hashlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from read_jax import cli
from read_jax.eval import i3d, inception, syncnet
from read_jax.eval.weights import NETWORKS, to_torch_layout
from read_jax.files import flatten, read_safetensors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "convert.py")
FLAGS = {"fid_inception": "--fid", "i3d": "--i3d", "syncnet": "--syncnet"}
FROM_TORCH = {"fid_inception": inception.inception_params_from_torch, "i3d": i3d.i3d_params_from_torch,
              "syncnet": syncnet.syncnet_params_from_torch}


def _randomise_norms(torch, model):
  """Every BatchNorm's affine and running statistics drawn at random (mean ~ N(0, 0.1), var ~ U(0.5, 1.5))."""
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
        m.running_mean.normal_(0.0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0.0, 0.1)
  return model.eval()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
  """{network: (path of its state dict under the published name, the reference model)}."""
  torch = pytest.importorskip("torch", reason="the published weights are PyTorch files")
  pid = pytest.importorskip("pytorch_fid.inception", reason="needs pytorch-fid for the FID Inception")
  pytorch_i3d = pytest.importorskip("cdfvd.third_party.i3d.pytorch_i3d", reason="needs cd-fvd for the I3D")
  syncnet_model = pytest.importorskip("syncnet_python.SyncNetModel", reason="needs PyPI syncnet-python 0.2.3")
  torch.manual_seed(0)
  # pytorch-fid's fid_inception_v3 builds torchvision's Inception3 with the FID blocks and loads the downloaded
  # file into it: hand it the model's own random state dict instead, so the saved file has the published
  # file's keys (torchvision names, fc of 1008 classes).
  built, inception_v3 = [], pid._inception_v3

  def build(*args, **kwargs):
    built.append(inception_v3(*args, **kwargs))
    return built[-1]
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(pid, "_inception_v3", build)
    mp.setattr(pid, "load_state_dict_from_url", lambda *args, **kwargs: built[-1].state_dict())
    fid = pid.fid_inception_v3()
  models = {"fid_inception": fid, "i3d": pytorch_i3d.InceptionI3d(400, in_channels=3), "syncnet": syncnet_model.S()}
  folder = tmp_path_factory.mktemp("published")
  out = {}
  for name, model in models.items():
    path = str(folder / NETWORKS[name].published)
    torch.save(_randomise_norms(torch, model).state_dict(), path)
    out[name] = (path, model)
  return out


@pytest.fixture(scope="module")
def imported(published, tmp_path_factory):
  """The output folder of one real ``scripts/convert.py import-metric-weights`` run with the three files."""
  out = str(tmp_path_factory.mktemp("imported") / "weights")
  argv = [a for name, (path, _) in published.items() for a in (FLAGS[name], path)]
  done = subprocess.run([sys.executable, SCRIPT, "import-metric-weights", *argv, "--out", out],
                        capture_output=True, text=True, cwd=REPO, timeout=600)
  assert done.returncode == 0, done.stderr
  assert "wrote fid_inception, i3d, syncnet and hashes.json" in done.stdout
  return out


def _convert_main():
  spec = importlib.util.spec_from_file_location("convert_script", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.main


def _sha256(path) -> str:
  with open(path, "rb") as fh:
    return hashlib.sha256(fh.read()).hexdigest()


def _snapshot(root) -> dict:
  out = {}
  for d, _, files in os.walk(root):
    for f in files:
      p = os.path.join(d, f)
      with open(p, "rb") as fh:
        out[p] = (fh.read(), os.stat(p).st_mtime_ns)
  return out


def _assert_same_variables(got, want):
  fg, fw = flatten(got), flatten(want)
  assert fg.keys() == fw.keys()
  for k in fw:
    np.testing.assert_array_equal(np.asarray(fg[k]), np.asarray(fw[k]), err_msg=k)


@pytest.mark.slow
def test_written_files_load_to_the_direct_conversion(published, imported):
  """load_* of each file = *_params_from_torch of the state dict; the file holds exactly the tensors it reads."""
  for name, (path, model) in published.items():
    target = os.path.join(imported, f"{name}.safetensors")
    _assert_same_variables(NETWORKS[name].load(target), FROM_TORCH[name](model.state_dict()))
    assert set(read_safetensors(target)) == set(NETWORKS[name].torch_shapes())  # no fc.*, no step counters


@pytest.mark.slow
def test_hashes_json_records_the_files(published, imported):
  with open(os.path.join(imported, "hashes.json")) as fh:
    manifest = json.load(fh)
  assert sorted(manifest) == sorted(NETWORKS)
  for name, (path, _) in published.items():
    entry, shapes = manifest[name], NETWORKS[name].torch_shapes()
    assert entry["source"] == NETWORKS[name].published
    assert entry["source_sha256"] == _sha256(path)
    assert entry["file"] == f"{name}.safetensors"
    assert entry["sha256"] == _sha256(os.path.join(imported, entry["file"]))
    assert entry["tensors"] == len(shapes)
    assert entry["parameters"] == sum(math.prod(s) for s in shapes.values())
  assert sorted(os.listdir(imported)) == sorted([f"{n}.safetensors" for n in NETWORKS] + ["hashes.json"])


@pytest.mark.slow
def test_converted_syncnet_matches_the_reference(published, imported):
  """The file's SyncNet audio tower gives the reference's embeddings on 3 random MFCC windows."""
  torch = pytest.importorskip("torch")
  _, model = published["syncnet"]
  variables = syncnet.load_syncnet(os.path.join(imported, "syncnet.safetensors"))
  mfcc = np.random.default_rng(1).normal(size=(3, 13, 20, 1)).astype(np.float32)
  with torch.no_grad():
    want = model.forward_aud(torch.from_numpy(mfcc).permute(0, 3, 1, 2)).numpy()
  got = np.asarray(syncnet.SyncNet().apply(variables, jnp.asarray(mfcc), method=syncnet.SyncNet.embed_audio))
  assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.slow
def test_from_folder_finds_the_published_names(published, imported, tmp_path, capsys):
  folder = os.path.dirname(published["i3d"][0])
  out = str(tmp_path / "weights")
  assert cli.run(_convert_main(), ["import-metric-weights", "--from", folder, "--out", out]) == 0
  with open(os.path.join(out, "hashes.json")) as fh, open(os.path.join(imported, "hashes.json")) as fi:
    assert json.load(fh) == json.load(fi)  # the same files, byte for byte
  assert "wrote fid_inception, i3d, syncnet" in capsys.readouterr().out


@pytest.mark.slow
def test_the_wrong_network_is_one_error_and_nothing_is_written(published, imported, tmp_path):
  """The I3D file given as --fid (beside a good --syncnet): exit 2, one line naming the file and what it
  holds; the earlier output folder keeps every byte and mtime, and no temporary file is left."""
  out = str(tmp_path / "weights")
  shutil.copytree(imported, out)
  before = _snapshot(out)
  i3d_path = published["i3d"][0]
  done = subprocess.run([sys.executable, SCRIPT, "import-metric-weights", "--fid", i3d_path,
                         "--syncnet", published["syncnet"][0], "--out", out],
                        capture_output=True, text=True, cwd=REPO, timeout=600)
  assert done.returncode == cli.EXIT_USER_ERROR
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: {i3d_path}: not the FID Inception"), done.stderr
  assert "give it as i3d" in lines[0] and "missing (470): Conv2d_1a_3x3" in lines[0] and "Conv3d_1a_7x7" in lines[0]
  assert _snapshot(out) == before


@pytest.mark.slow
def test_bad_inputs_are_one_error_line(published, tmp_path, capsys):
  """A missing file, a pickled whole module (what weights_only refuses: the message says how to re-save it),
  a file that is no torch file: exit 2, one line, nothing written."""
  torch = pytest.importorskip("torch")
  main = _convert_main()
  out = tmp_path / "weights"
  whole = str(tmp_path / "syncnet_v2.model")
  torch.save(published["syncnet"][1], whole)
  junk = tmp_path / "junk.pt"
  junk.write_bytes(b"not a torch file")
  cases = [
    (["--fid", str(tmp_path / "missing.pth")], "missing.pth: no such file"),
    (["--syncnet", whole], "re-save its state dict"),
    (["--i3d", str(junk)], "junk.pt: not a readable PyTorch file"),
  ]
  for argv, says in cases:
    assert cli.run(main, ["import-metric-weights", *argv, "--out", str(out)]) == cli.EXIT_USER_ERROR, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], (argv, err)
  assert not out.exists()


def test_torch_layout_is_what_the_converter_reads():
  """Random tensors of every torch shape → Flax (the converter) → torch layout: the same tensors, same names
  (odd kernels such as SyncNet's 5×4 and 5×7×7 would show a wrong transpose)."""
  rng = np.random.default_rng(2)
  state = {k: rng.normal(size=s).astype(np.float32) for k, s in syncnet.torch_state_shapes().items()}
  back = to_torch_layout("syncnet", syncnet.syncnet_params_from_torch(state))
  assert list(back) == list(state)
  for k in state:
    np.testing.assert_array_equal(back[k], state[k], err_msg=k)


def test_folder_and_flag_mistakes_are_one_error_line(tmp_path, capsys):
  """Checked before torch is needed: an empty folder, a folder and files at once, nothing given."""
  main = _convert_main()
  (tmp_path / "empty").mkdir()
  out = tmp_path / "weights"
  cases = [
    (["--from", str(tmp_path / "empty")], "none of the published metric weight files"),
    (["--from", str(tmp_path / "nowhere")], "nowhere: not a directory"),
    (["--from", str(tmp_path / "empty"), "--i3d", "x.pt"], "not both"),
    ([], "give at least one weight file"),
  ]
  for argv, says in cases:
    assert cli.run(main, ["import-metric-weights", *argv, "--out", str(out)]) == cli.EXIT_USER_ERROR, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], (argv, err)
  assert not out.exists()
