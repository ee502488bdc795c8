"""LTX transformer import/export: diffusers directories, original single files, block truncation, errors."""

import os

import jax
import numpy as np
import pytest

from read_jax.convert import CheckpointError
from read_jax.files import flatten, write_safetensors
from read_jax.convert.ltx_transformer import (convert_original_state_dict, export_transformer, load_transformer,
                                              split_audio)

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

SETTINGS = dict(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=12, cross_attention_dim=24,
                caption_channels=12)


def reference(num_layers, seed=0):
  torch.manual_seed(seed)
  ref = diffusers.LTXVideoTransformer3DModel(num_layers=num_layers, **SETTINGS).eval()
  with torch.no_grad():
    for p in ref.parameters():
      p.add_(0.2 * torch.randn_like(p))
  return ref


def numpy_state_dict(ref):
  return {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """A 3-block tiny diffusers model saved with save_pretrained(safe_serialization=True)."""
  ref = reference(3)
  path = tmp_path_factory.mktemp("ltx") / "transformer"
  ref.save_pretrained(path, safe_serialization=True)
  return ref, str(path)


def assert_params_equal_state_dict(params, sd, layers):
  ltx, audio = split_audio(params)
  from read_jax.convert.torch_layout import flax_to_torch
  back = flax_to_torch(ltx, stacked=["transformer_blocks"])
  want = {k: v for k, v in sd.items() if not k.startswith("transformer_blocks.")
          or int(k.split(".")[1]) < layers}
  assert sorted(back) == sorted(want)
  for k in want:
    np.testing.assert_array_equal(back[k], want[k], err_msg=k)
  assert not np.any(audio["to_out_0"]["kernel"]) and not np.any(audio["to_out_0"]["bias"])
  assert np.any(audio["to_q"]["kernel"])  # the rest of the audio attention is initialised, not zero


@pytest.mark.slow
def test_load_diffusers_directory(saved):
  ref, path = saved
  model, params = load_transformer(path)
  assert (model.num_layers, model.num_heads, model.head_dim, model.in_channels) == (3, 2, 12, 8)
  assert_params_equal_state_dict(params, numpy_state_dict(ref), 3)
  # The loaded model computes what diffusers computes (audio attention at its initial value).
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, 3, 2, 3, 8)).astype(np.float32)
  t = np.array([[0.0, 0.3, 0.7]], np.float32)
  text = rng.standard_normal((1, 4, 12)).astype(np.float32)
  mask = np.array([[True, True, True, False]])
  speech = rng.standard_normal((1, 2, 2, model.audio_dim)).astype(np.float32)
  got = jax.jit(model.apply)({"params": params}, x, t, speech, text, mask)
  with torch.no_grad():
    want = ref(hidden_states=torch.from_numpy(x.reshape(1, -1, 8)), encoder_hidden_states=torch.from_numpy(text),
               timestep=torch.from_numpy(np.repeat(t * 1000, 6, axis=1)),
               encoder_attention_mask=torch.from_numpy(mask.astype(np.float32)), num_frames=3, height=2, width=3,
               rope_interpolation_scale=(8 / 25, 32, 32), return_dict=False)[0].numpy().reshape(got.shape)
  assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5


def test_more_blocks_than_the_config_keeps_the_first(saved):
  ref, path = saved
  with pytest.warns(UserWarning, match="3 transformer blocks.*keeping blocks 0..1"):
    model, params = load_transformer(path, num_layers=2)
  assert model.num_layers == 2
  assert_params_equal_state_dict(params, numpy_state_dict(ref), 2)


def test_fewer_or_missing_keys_are_one_clear_error(saved, tmp_path):
  ref, path = saved
  with pytest.raises(CheckpointError, match=r"layers \[3\] missing"):
    load_transformer(path, num_layers=4)
  sd = numpy_state_dict(ref)
  del sd["transformer_blocks.1.attn1.to_q.weight"], sd["proj_out.bias"]
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "config.json").write_text(open(os.path.join(path, "config.json")).read())
  write_safetensors(str(bad / "diffusion_pytorch_model.safetensors"), sd)
  with pytest.raises(CheckpointError, match="does not match the model") as e:
    load_transformer(str(bad))
  assert "missing (1): proj_out.bias" in str(e.value)
  assert "transformer_blocks/attn1/to_q/kernel: layers [1] missing" in str(e.value)
  with pytest.raises(CheckpointError, match="no such file"):
    load_transformer(str(tmp_path / "nowhere"))


def original_checkpoint(sd):
  """diffusers keys → original single-file LTX-Video keys (the inverse renaming), plus VAE tensors."""
  out = {}
  for k, v in sd.items():
    k = (k.replace("proj_in", "patchify_proj").replace("time_embed", "adaln_single")
         .replace("norm_q", "q_norm").replace("norm_k", "k_norm"))
    out["model.diffusion_model." + k] = v
  out["vae.decoder.conv_in.conv.weight"] = np.ones((2, 2), np.float32)
  out["vae.per_channel_statistics.mean-of-means"] = np.zeros((8,), np.float32)
  return out


def test_original_single_file_matches_diffusers_conversion(saved, tmp_path):
  from diffusers.loaders.single_file_utils import convert_ltx_transformer_checkpoint_to_diffusers
  ref, _ = saved
  sd = numpy_state_dict(ref)
  original = original_checkpoint(sd)
  want = convert_ltx_transformer_checkpoint_to_diffusers({k: torch.from_numpy(v) for k, v in original.items()})
  got = convert_original_state_dict(original)
  assert sorted(got) == sorted(want) == sorted(sd)
  for k in got:
    np.testing.assert_array_equal(got[k], want[k].numpy())
  path = str(tmp_path / "ltx-video-2b.safetensors")
  write_safetensors(path, original)
  with pytest.raises(CheckpointError, match="width 24 is not a multiple of head width 64"):
    load_transformer(path)  # LTX's head width 64 is assumed when the file does not say
  # Original files carry their config as metadata: the head count comes from there, the rest from shapes.
  write_safetensors(path, original, metadata={"config": '{"transformer": {"num_attention_heads": 2}}'})
  model, params = load_transformer(path)
  got = (model.num_layers, model.num_heads, model.head_dim, model.in_channels, model.caption_channels)
  assert got == (3, 2, 12, 8, 12)
  assert_params_equal_state_dict(params, sd, 3)
  model, params = load_transformer(path, config=_tiny_config(), num_layers=3)
  assert_params_equal_state_dict(params, sd, 3)
  with pytest.raises(CheckpointError, match="not an original LTX-Video checkpoint"):
    write_safetensors(str(tmp_path / "other.safetensors"), {"foo": np.zeros(2, np.float32)})
    load_transformer(str(tmp_path / "other.safetensors"))


def _tiny_config():
  from read_jax.config import load_config
  return load_config("a2v_dit:tiny", ("config.model.head_dim=12", "config.model.cross_attention_dim=24"))


def test_export_then_import_is_bit_exact(saved, tmp_path):
  _, path = saved
  model, params = load_transformer(path, key=jax.random.key(3))
  out = str(tmp_path / "exported")
  export_transformer(params, _tiny_config().model.to_dict() | {"num_layers": 3}, out)
  model2, params2 = load_transformer(out, key=jax.random.key(3))
  assert model2 == model
  a, b = flatten(params), flatten(params2)
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
  # diffusers reads the export back to the same state dict.
  back = diffusers.LTXVideoTransformer3DModel.from_pretrained(out)
  sd = numpy_state_dict(back)
  ltx_sd = numpy_state_dict(saved[0])
  assert sorted(sd) == sorted(ltx_sd)
  for k in sd:
    np.testing.assert_array_equal(sd[k], ltx_sd[k], err_msg=k)


def test_config_must_agree_with_config_json(saved):
  _, path = saved
  cfg = _tiny_config().model.to_dict() | {"num_heads": 4, "head_dim": 6}  # same width 24, other heads
  with pytest.raises(CheckpointError, match="num_heads: config 4 vs checkpoint 2"):
    load_transformer(path, config=cfg)
