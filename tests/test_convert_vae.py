"""LTX-Video VAE weights: diffusers directories, original single files, export, and their errors."""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

from configs.vae_ltx import get_config
from read_jax.convert import CheckpointError
from read_jax.files import flatten, write_json
from read_jax.convert.vae import export_vae, load_vae, original_to_diffusers_key, variables_to_state_dict
from read_jax.models.vae import make_config
from _ltx_original import diffusers_to_original_key

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
from diffusers.loaders.single_file_utils import convert_ltx_vae_checkpoint_to_diffusers  # noqa: E402


def _torch_vae(cfg, seed=0):
  torch.manual_seed(seed)
  ref = diffusers.AutoencoderKLLTXVideo(**{k: v for k, v in cfg.to_diffusers().items() if k != "_class_name"})
  with torch.no_grad():
    for p in list(ref.parameters()) + list(ref.buffers()):
      p.copy_(torch.randn_like(p))
  return ref


@pytest.mark.parametrize("variant", ["0.9.0", "0.9.1", "0.9.5"])
def test_original_key_map_matches_diffusers(variant):
  """Full-size key sets (meta device): our original names, renamed by diffusers' own converter, give
  diffusers' names back, and our forward map agrees with diffusers' on every key."""
  cfg = make_config(get_config(variant))
  with torch.device("meta"):
    ref = diffusers.AutoencoderKLLTXVideo(**{k: v for k, v in cfg.to_diffusers().items() if k != "_class_name"})
  state = ref.state_dict()
  original = {"vae." + diffusers_to_original_key(k, cfg): v for k, v in state.items()}
  assert len(original) == len(state)
  original["vae.per_channel_statistics.channel"] = torch.empty(0, device="meta")  # dropped by both
  original["vae.per_channel_statistics.mean-of-stds"] = torch.empty(0, device="meta")
  theirs = convert_ltx_vae_checkpoint_to_diffusers(dict(original))
  assert set(theirs) == set(state)
  for k in original:
    new = original_to_diffusers_key(k[len("vae."):], cfg)
    assert new is None or original[k] is theirs[new]


def _assert_same_tree(a, b):
  fa, fb = flatten(a), flatten(b)
  assert set(fa) == set(fb)
  for k in fa:
    np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  """A tiny 0.9.1 VAE saved by diffusers itself, sharded."""
  cfg = make_config(get_config("0.9.1,tiny"))
  ref = _torch_vae(cfg)
  path = str(tmp_path_factory.mktemp("vae_dir"))
  ref.save_pretrained(path, max_shard_size="100KB", safe_serialization=True)
  return cfg, ref, path


def test_load_diffusers_dir_export_roundtrip(tiny_dir, tmp_path):
  cfg, ref, path = tiny_dir
  assert any(f.endswith(".safetensors.index.json") for f in os.listdir(path))  # really sharded
  module, variables = load_vae(path)
  assert module.config.timestep_conditioning and module.config.decoder_block_out_channels == (8, 16, 32)
  state = {k: v.numpy() for k, v in ref.state_dict().items()}
  back = variables_to_state_dict(variables)
  assert set(back) == set(state)
  for k in state:
    np.testing.assert_array_equal(back[k], state[k], err_msg=k)
  np.testing.assert_array_equal(variables["buffers"]["latents_std"], state["latents_std"])
  # export → import is bit-exact, and diffusers loads the export strictly
  export_vae(module, variables, str(tmp_path / "out"))
  module2, variables2 = load_vae(str(tmp_path / "out"))
  assert module2.config == module.config
  _assert_same_tree(variables2, variables)
  again = diffusers.AutoencoderKLLTXVideo.from_pretrained(str(tmp_path / "out"))
  for k, v in again.state_dict().items():
    np.testing.assert_array_equal(v.numpy(), state[k], err_msg=k)


def test_load_original_single_file(tiny_dir, tmp_path):
  """Fixture: diffusers' tiny model written in the original layout (keys under vae., config in metadata)."""
  cfg, ref, path = tiny_dir
  state = {k: v.numpy() for k, v in ref.state_dict().items()}
  original = {"vae." + diffusers_to_original_key(k, cfg): v for k, v in state.items()}
  original["vae.per_channel_statistics.channel"] = np.arange(8, dtype=np.float32)
  original["model.diffusion_model.patchify_proj.weight"] = np.zeros((2, 2), np.float32)  # not the VAE's
  # diffusers' own converter reads this fixture back to the diffusers state dict
  theirs = convert_ltx_vae_checkpoint_to_diffusers({k: torch.from_numpy(v) for k, v in original.items()})
  assert set(theirs) == set(state)
  file = str(tmp_path / "ltx.safetensors")
  save_file(original, file, metadata={"config": json.dumps({"vae": cfg.to_diffusers()})})
  _, from_dir = load_vae(path)
  module, variables = load_vae(file)
  assert module.config == make_config(get_config("0.9.1,tiny"))
  _assert_same_tree(variables, from_dir)
  # without a usable config the version is read off the keys (0.9.1 here): full size, so shapes mismatch
  save_file(original, file, metadata={"config": json.dumps({"vae": {"_class_name": "CausalVideoAutoencoder"}})})
  with pytest.raises(CheckpointError, match="mis-shaped"):
    load_vae(file)


def test_bad_checkpoints_are_clear_errors(tiny_dir, tmp_path):
  cfg, ref, _ = tiny_dir
  state = {k: v.numpy() for k, v in ref.state_dict().items()}
  del state["decoder.conv_in.conv.bias"]
  state["decoder.extra.weight"] = np.zeros(3, np.float32)
  state["encoder.conv_in.conv.weight"] = state["encoder.conv_in.conv.weight"][:1]
  d = tmp_path / "bad"
  d.mkdir()
  save_file(state, str(d / "diffusion_pytorch_model.safetensors"))
  write_json(str(d / "config.json"), cfg.to_diffusers())
  with pytest.raises(CheckpointError) as e:
    load_vae(str(d))
  lines = str(e.value).splitlines()
  assert str(d) in lines[0]
  missing = next(l for l in lines if "missing" in l)
  assert "decoder.conv_in.conv.bias" in missing
  assert "unexpected (1): decoder.extra.weight" in str(e.value)
  assert "mis-shaped (1): encoder.conv_in.conv.weight: checkpoint (1, 48, 3, 3, 3)" in str(e.value)
  write_json(str(d / "config.json"), {**cfg.to_diffusers(), "sample_size": 3})
  with pytest.raises(CheckpointError, match=r"config.json: VAE config: unknown keys \['sample_size'\]"):
    load_vae(str(d))
  with pytest.raises(CheckpointError, match="no such file"):
    load_vae(str(tmp_path / "nope"))
  (tmp_path / "x.ckpt").write_bytes(b"")
  with pytest.raises(CheckpointError, match="only safetensors"):
    load_vae(str(tmp_path / "x.ckpt"))
