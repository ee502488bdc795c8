"""Broken read_jax checkpoint directories: every way one can be wrong is one clear error at load.

A copy of the bundled demo checkpoint (assets/demo, 32 MB) is broken one way per case — a truncated or
corrupt safetensors file, a missing part, parts of different widths, a NaN/inf weight, a config.json of
a newer format or with unknown fields, weights that do not match their own config — and loaded by the
two readers a user meets: ``scripts/convert.py export-torch`` (in this process, under
:func:`read_jax.cli.run`, as the script runs) and ``ReadPipeline.from_pretrained`` (what
scripts/sample.py loads; one sample.py subprocess checks the real exit code). Each must give exit code 2 /
a :class:`~read_jax.errors.CheckpointError` whose one line names the file (and tensor or field) and the
problem, and leave the checkpoint and any earlier output exactly as they were.
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from read_jax import cli
from read_jax.config import load_config
from read_jax.convert import native
from read_jax.errors import CheckpointError
from read_jax.files import read_safetensors, write_safetensors
from read_jax.pipeline import ReadPipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "assets", "demo")


def snapshot(root) -> dict[str, tuple[bytes, int]]:
  """Bytes and mtime of every file under ``root``."""
  out = {}
  for d, _, files in os.walk(str(root)):
    for f in files:
      p = os.path.join(d, f)
      with open(p, "rb") as fh:
        out[p] = (fh.read(), os.stat(p).st_mtime_ns)
  return out


def _random_part(directory, kind, config, seed):
  """A ``kind`` module directory with random weights of the shapes ``config`` implies (nothing compiled)."""
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: (0.02 * rng.standard_normal(s.shape)).astype(np.float32),
                        native.param_shapes(kind, config))
  native.save_module(str(directory), kind, config, params)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  """The demo checkpoint, and parts of *other* checkpoints that do not fit it."""
  if not os.path.isdir(os.path.join(DEMO, "a2v_dit")):
    pytest.skip("assets/demo checkpoint not bundled")
  root = tmp_path_factory.mktemp("ckpts")
  shutil.copytree(DEMO, root / "demo")
  # A SpeechAE of another width: the tiny config's (latent [2, 16], features 12) vs the demo's ([2, 64], 384).
  _random_part(root / "other" / "speech_ae", "speech_ae", dict(load_config("speechae.py:tiny").model), 1)
  # An A2V-DiT that fits the demo's SpeechAE but not its VAE (8 latent channels vs 16).
  dit = native.read_config(os.path.join(DEMO, "a2v_dit"), "a2v_dit")
  _random_part(root / "other" / "a2v_dit", "a2v_dit", dict(dit, in_channels=8, out_channels=8), 2)
  return root


def _edit_json(path, edit):
  with open(path) as fh:
    obj = json.load(fh)
  edit(obj)
  with open(path, "w") as fh:
    json.dump(obj, fh)


def _set_value(path, key, value):
  tensors = read_safetensors(path)
  tensors[key] = tensors[key].copy()
  tensors[key].flat[tensors[key].size // 2] = value
  write_safetensors(path, tensors)


def truncated(ckpt, other):
  path = os.path.join(ckpt, "vae", "diffusion_pytorch_model.safetensors")  # the first part every reader loads
  with open(path, "rb") as fh:
    data = fh.read()
  with open(path, "wb") as fh:
    fh.write(data[:len(data) // 2])


def corrupt(ckpt, other):
  with open(os.path.join(ckpt, "a2v_dit", "model.safetensors"), "wb") as fh:
    fh.write(np.random.default_rng(0).bytes(4096))


def part_missing(ckpt, other):
  shutil.rmtree(os.path.join(ckpt, "speech_ae"))


def speech_ae_of_another_width(ckpt, other):
  shutil.rmtree(os.path.join(ckpt, "speech_ae"))
  shutil.copytree(os.path.join(other, "speech_ae"), os.path.join(ckpt, "speech_ae"))


def dit_of_other_latent_channels(ckpt, other):
  shutil.rmtree(os.path.join(ckpt, "a2v_dit"))
  shutil.copytree(os.path.join(other, "a2v_dit"), os.path.join(ckpt, "a2v_dit"))


def nan_weight(ckpt, other):
  _set_value(os.path.join(ckpt, "speech_ae", "model.safetensors"), "encoder/proj_in/kernel", np.nan)


def inf_weight(ckpt, other):
  _set_value(os.path.join(ckpt, "speech_encoder", "model.safetensors"), "model.encoder.layer_norm.weight", np.inf)


def newer_format(ckpt, other):
  _edit_json(os.path.join(ckpt, "a2v_dit", "config.json"), lambda c: c.update(format_version=2))


def unknown_top_field(ckpt, other):
  _edit_json(os.path.join(ckpt, "speech_ae", "config.json"), lambda c: c.update(quantization="int8"))


def unknown_module_field(ckpt, other):
  _edit_json(os.path.join(ckpt, "speech_ae", "config.json"), lambda c: c["config"].update(dropout=0.1))


def config_not_json(ckpt, other):
  with open(os.path.join(ckpt, "speech_ae", "config.json"), "w") as fh:
    fh.write('{"kind": "speech_ae", ')


def weights_do_not_fit_config(ckpt, other):
  _edit_json(os.path.join(ckpt, "speech_ae", "config.json"), lambda c: c["config"].update(hidden_dim=32))


def unknown_pipeline_setting(ckpt, other):
  _edit_json(os.path.join(ckpt, "pipeline.json"), lambda c: c.update(guidance=3.0))


BOTH, PIPELINE = ("export", "pipeline"), ("pipeline",)
# (break, readers that must refuse it, what the one line says ({ckpt}: the broken directory))
CASES = [
  (truncated, BOTH, r"{ckpt}/vae/diffusion_pytorch_model\.safetensors: not a readable safetensors file "
                    r"\(.*\); truncated or corrupt\?"),
  (corrupt, BOTH, r"{ckpt}/a2v_dit/model\.safetensors: not a readable safetensors file \(.*\); truncated or "
                  r"corrupt\?"),
  (part_missing, PIPELINE, r"{ckpt}: missing speech_ae/ \(from a stage-1 training run.*\)"),
  (speech_ae_of_another_width, PIPELINE, r"{ckpt}: parts do not fit together: speech_ae latent \[2, 16\] vs "
                                         r"a2v_dit audio \[2, 64\].*speech_ae feature_dim 12 vs speech_encoder width 384"),
  (dit_of_other_latent_channels, PIPELINE, r"{ckpt}: parts do not fit together: a2v_dit in_channels 8 vs vae "
                                           r"latent_channels 16.*"),
  (nan_weight, BOTH, r"{ckpt}/speech_ae/model\.safetensors: tensor encoder/proj_in/kernel holds 1 NaN/inf "
                     r"value\(s\) of \d+"),
  (inf_weight, BOTH, r"{ckpt}/speech_encoder/model\.safetensors: tensor model\.encoder\.layer_norm\.weight holds 1 "
                     r"NaN/inf value\(s\) of \d+"),
  (newer_format, BOTH, r"{ckpt}/a2v_dit/config\.json: format_version 2 is newer than this read_jax reads \(1\); "
                       r"update read_jax"),
  (unknown_top_field, BOTH, r"{ckpt}/speech_ae/config\.json: unknown field\(s\) \['quantization'\] \(known: "
                            r"config, format_version, kind\)"),
  (unknown_module_field, BOTH, r"{ckpt}/speech_ae/config\.json: unknown speech_ae field\(s\) \['dropout'\] in "
                               r"\"config\" \(known: .*hidden_dim.*\)"),
  (config_not_json, BOTH, r"{ckpt}/speech_ae/config\.json: not valid JSON \(.*\)"),
  (weights_do_not_fit_config, BOTH, r"{ckpt}/speech_ae: checkpoint does not match the model; mis-shaped \(\d+\): "
                                    r"decoder/norm_out/scale: checkpoint \(64,\) vs model \(32,\), .*"),
  (unknown_pipeline_setting, PIPELINE, r"pipeline\.json: unknown settings \['guidance'\] \(known: .*\)"),
]
PARAMS = [pytest.param(brk, reader, says, id=f"{brk.__name__}-{reader}")
          for brk, readers, says in CASES for reader in readers]


def _convert_main():
  spec = importlib.util.spec_from_file_location("convert_script", os.path.join(REPO, "scripts", "convert.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.main


def _broken(base, tmp_path, brk) -> str:
  ckpt = tmp_path / "ckpt"
  shutil.copytree(base / "demo", ckpt)
  brk(str(ckpt), str(base / "other"))
  return str(ckpt)


@pytest.mark.parametrize("brk, reader, says", PARAMS)
def test_broken_checkpoint_is_one_clear_error(base, tmp_path, capsys, brk, reader, says):
  ckpt = _broken(base, tmp_path, brk)
  out = tmp_path / "out"
  out.mkdir()
  (out / "notes.txt").write_text("an earlier file in the output directory\n")
  before = snapshot(tmp_path)
  if reader == "export":
    code = cli.run(_convert_main(), ["export-torch", "--ckpt", ckpt, "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == cli.EXIT_USER_ERROR, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    message = lines[0][len("error: "):]
  else:
    with pytest.raises(CheckpointError) as info:
      ReadPipeline.from_pretrained(ckpt)
    message = cli.error_message(info.value)  # the one line a script prints for it
  assert re.fullmatch(says.format(ckpt=re.escape(ckpt)), message), message
  for path, (data, mtime) in before.items():  # the checkpoint and earlier output untouched
    assert os.path.isfile(path), path
    assert (open(path, "rb").read(), os.stat(path).st_mtime_ns) == (data, mtime), path


def test_fit_problems_name_both_parts(base):
  """The cross-part widths (native.fit_problems), from the parts' own config files."""
  vae = json.load(open(os.path.join(DEMO, "vae", "config.json")))
  encoder = {"width": json.load(open(os.path.join(DEMO, "speech_encoder", "config.json")))["d_model"]}
  demo = {p: native.read_config(os.path.join(DEMO, p), p) for p in ("speech_ae", "a2v_dit")}
  assert native.fit_problems({**demo, "vae": vae, "speech_encoder": encoder}) == []
  other_sae = native.read_config(str(base / "other" / "speech_ae"), "speech_ae")
  other_dit = native.read_config(str(base / "other" / "a2v_dit"), "a2v_dit")
  assert native.fit_problems({**demo, "speech_ae": other_sae, "speech_encoder": encoder}) == [
      "speech_ae latent [2, 16] vs a2v_dit audio [2, 64] (audio_tokens, audio_dim)",
      "speech_ae feature_dim 12 vs speech_encoder width 384"]
  assert native.fit_problems({**demo, "a2v_dit": other_dit, "vae": vae}) == [
      "a2v_dit in_channels 8 vs vae latent_channels 16", "a2v_dit out_channels 8 vs vae latent_channels 16"]
  assert native.fit_problems({"a2v_dit": other_dit}) == []  # one part alone always fits


def test_format_version_is_written_and_old_files_still_load(base, tmp_path):
  config, params = native.load_module(os.path.join(DEMO, "speech_ae"), "speech_ae")  # no format_version: v1
  native.save_module(str(tmp_path / "sae"), "speech_ae", config, params)
  with open(tmp_path / "sae" / "config.json") as fh:
    assert json.load(fh)["format_version"] == native.FORMAT_VERSION
  config2, params2 = native.load_module(str(tmp_path / "sae"), "speech_ae")
  assert config2 == config
  jax.tree.map(np.testing.assert_array_equal, params2, params)


def test_failed_export_leaves_an_earlier_export_untouched(base, tmp_path):
  out = tmp_path / "out"
  main = _convert_main()
  assert cli.run(main, ["export-torch", "--ckpt", str(base / "demo"), "--out", str(out)]) == 0
  before = snapshot(out)
  ckpt = _broken(base, tmp_path, corrupt)  # a2v_dit is exported last
  assert cli.run(main, ["export-torch", "--ckpt", ckpt, "--out", str(out)]) == cli.EXIT_USER_ERROR
  assert snapshot(out) == before


def test_sample_script_refuses_a_truncated_checkpoint(base, tmp_path):
  """scripts/sample.py as a process: exit code 2, one ``error:`` line naming the file, --out untouched."""
  ckpt = _broken(base, tmp_path, truncated)
  video = tmp_path / "out.mp4"
  video.write_bytes(b"an earlier video")
  before = snapshot(tmp_path)
  proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "sample.py"), "--ckpt", ckpt,
                         "--out", str(video)], cwd=tmp_path, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                        capture_output=True, text=True, timeout=300)
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert "vae/diffusion_pytorch_model.safetensors" in errors[0] and "truncated or corrupt" in errors[0], errors[0]
  assert snapshot(tmp_path) == before
