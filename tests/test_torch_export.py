"""read_jax checkpoint directory ↔ PyTorch: bit-exact round trip and JAX/PyTorch parity of every part."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from read_jax import cli
from read_jax.convert import CheckpointError, load_text_embedding, native
from read_jax.files import flatten, read_safetensors, unflatten, write_json, write_safetensors
from read_jax.convert.torch_export import export_torch, import_torch, speech_ae_shapes

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

SAE = dict(feature_dim=7, window=3, hidden_dim=11, latent_tokens=2, latent_dim=10, kernel_size=3)


def _rel(got, want):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return np.linalg.norm(got - want) / np.linalg.norm(want)


def _random_params(shapes, seed, std=0.3):
  """Random float32 params from ShapeDtypeStructs (numpy only: nothing is compiled): scales near 1,
  everything else N(0, std²), so every weight matters (the audio output projection included)."""
  rng = np.random.default_rng(seed)
  flat = flatten(shapes)
  out = {k: (1 + 0.1 * rng.standard_normal(s.shape) if k.endswith("scale") else std * rng.standard_normal(s.shape))
         for k, s in flat.items()}
  return unflatten({k: v.astype(np.float32) for k, v in out.items()})


def _dit():
  from read_jax.config import load_config
  from read_jax.models import a2v_dit
  config = dict(load_config("a2v_dit:tiny").model)
  config.update(num_layers=2, num_heads=2, head_dim=6, cross_attention_dim=12, audio_dim=SAE["latent_dim"],
                in_channels=5, out_channels=5)
  config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()
            if k not in ("dtype", "param_dtype")}
  model = a2v_dit.build_model(config)
  # std 0.2: attention logits of O(1), where float32 rounding is not amplified by a saturated softmax
  return config, model, _random_params(a2v_dit.param_shapes(model), 1, std=0.2)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  """A tiny random read_jax checkpoint directory with all five parts."""
  from read_jax.convert.whisper import export_whisper_encoder, whisper_config
  from read_jax.convert.whisper import encoder_param_shapes
  from read_jax.models import whisper
  from read_jax.models.vae import make_config
  from configs.vae_ltx import get_config
  from read_jax.convert.vae import export_vae, load_vae
  root = tmp_path_factory.mktemp("ckpt")
  # VAE: a diffusers-made tiny 0.9.1 VAE (timestep-conditioned decoder), weights perturbed.
  # Noise injection off: diffusers draws its noise from torch's generator, ours from a JAX key.
  cfg = make_config(dict(get_config("0.9.1,tiny"), decoder_inject_noise=(False,) * 4))
  torch.manual_seed(0)
  ref = diffusers.AutoencoderKLLTXVideo(**{k: v for k, v in cfg.to_diffusers().items() if k != "_class_name"})
  with torch.no_grad():
    for p in ref.parameters():
      p.add_(0.05 * torch.randn_like(p))
    ref.latents_mean.copy_(0.1 * torch.randn_like(ref.latents_mean))
    ref.latents_std.copy_(1 + 0.1 * torch.rand_like(ref.latents_std))
  ref.save_pretrained(str(root / "vae_diffusers"), safe_serialization=True)
  module, variables = load_vae(str(root / "vae_diffusers"))  # the read_jax layout: as save_pretrained writes it
  export_vae(module, variables, str(root / "vae"))
  shutil.rmtree(root / "vae_diffusers")
  # Whisper: the few-kB test size, random.
  encoder = whisper.encoder_from_config(whisper_config("test"))
  shapes = encoder_param_shapes(encoder)
  wparams = _random_params(shapes, 3)
  export_whisper_encoder(encoder, wparams, str(root / "speech_encoder"))
  # SpeechAE and A2V-DiT in read_jax's native layout.
  sparams = _random_params(speech_ae_shapes(SAE), 4)
  native.save_module(str(root / "speech_ae"), "speech_ae", SAE, sparams)
  config, _, dparams = _dit()
  native.save_module(str(root / "a2v_dit"), "a2v_dit", config, dparams)
  write_safetensors(str(root / "prompt.safetensors"),
                    {"prompt_embeds": np.random.default_rng(5).standard_normal((4, 12)).astype(np.float32),
                     "prompt_attention_mask": np.array([1, 1, 1, 0], np.int64)})
  write_json(str(root / "pipeline.json"), {"steps": 4})
  out = tmp_path_factory.mktemp("torch")
  export_torch(str(root), str(out))
  return str(root), str(out)


def _files(directory):
  out = {}
  for dirpath, _, names in os.walk(directory):
    for n in names:
      out[os.path.relpath(os.path.join(dirpath, n), directory)] = os.path.join(dirpath, n)
  return out


def test_export_layout_and_round_trip_is_bit_exact(ckpt, tmp_path):
  root, out = ckpt
  assert sorted(os.listdir(out)) == ["audio_attention", "pipeline.json", "prompt.safetensors", "speech_ae",
                                     "transformer", "vae", "whisper"]
  back = str(tmp_path / "back")
  assert sorted(import_torch(out, back)) == ["a2v_dit", "speech_ae", "speech_encoder", "vae"]
  a, b = _files(root), _files(back)
  assert sorted(a) == sorted(b)
  for rel in a:
    if rel.endswith(".safetensors"):
      ta, tb = read_safetensors(a[rel]), read_safetensors(b[rel])
      assert sorted(ta) == sorted(tb), rel
      for k in ta:
        assert ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape, (rel, k)
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=f"{rel}: {k}")
    else:
      with open(a[rel]) as fa, open(b[rel]) as fb:
        assert json.load(fa) == json.load(fb), rel
  # And as param trees through the native loader.
  for part in ("a2v_dit", "speech_ae"):
    ca, pa = native.load_module(os.path.join(root, part), part)
    cb, pb = native.load_module(os.path.join(back, part), part)
    assert ca == cb
    fa, fb = flatten(pa), flatten(pb)
    assert sorted(fa) == sorted(fb)
    for k in fa:
      np.testing.assert_array_equal(fa[k], fb[k])


def test_diffusers_loads_exported_transformer_strictly(ckpt):
  _, out = ckpt
  ltx = diffusers.LTXVideoTransformer3DModel.from_pretrained(os.path.join(out, "transformer"))
  assert len(ltx.transformer_blocks) == 2 and not hasattr(ltx.transformer_blocks[0], "audio_attn")
  keys = read_safetensors(os.path.join(out, "audio_attention", "model.safetensors"))
  assert sorted({k.split(".", 3)[-1] for k in keys}) == sorted(
      ["to_q.weight", "to_q.bias", "to_k.weight", "to_k.bias", "to_v.weight", "to_v.bias", "norm_q.weight",
       "norm_k.weight", "to_out.0.weight", "to_out.0.bias"])


def test_vae_decode_parity(ckpt):
  from read_jax.convert.vae import load_vae
  root, out = ckpt
  module, variables = load_vae(os.path.join(root, "vae"))
  ref = diffusers.AutoencoderKLLTXVideo.from_pretrained(os.path.join(out, "vae")).eval()
  c = module.config
  z = np.random.default_rng(0).standard_normal((1, 2, 3, 2, c.latent_channels)).astype(np.float32)  # [B, t, h, w, C]
  temb = np.array([0.05], np.float32)
  got = np.asarray(jax.jit(lambda v, z, t: module.apply(v, z, t, method=module.decode))(variables, z, temb))
  with torch.no_grad():
    want = ref.decode(torch.from_numpy(z.transpose(0, 4, 1, 2, 3)), temb=torch.from_numpy(temb)).sample.numpy()
  want = want.transpose(0, 2, 3, 4, 1)  # [B, C, T, H, W] → [B, T, H, W, C]
  assert got.shape == want.shape
  assert _rel(got, want) < 1e-5


@pytest.mark.slow
def test_speech_ae_encode_parity(ckpt):
  from read_jax.models.speech_ae import SpeechAE
  from read_jax.torch.speech_ae import SpeechAE as TorchSpeechAE
  root, out = ckpt
  config, params = native.load_module(os.path.join(root, "speech_ae"), "speech_ae")
  model = TorchSpeechAE.from_exported(os.path.join(out, "speech_ae"))
  s = np.random.default_rng(1).standard_normal((2, 17, SAE["window"], SAE["feature_dim"])).astype(np.float32)
  c, s_hat = SpeechAE(**config).apply({"params": params}, s)
  with torch.no_grad():
    tc, ts_hat = model(torch.from_numpy(s))
  assert tc.shape == (2, 3, 2, SAE["latent_dim"])
  assert _rel(c, tc.numpy()) < 1e-5
  assert _rel(s_hat, ts_hat.numpy()) < 1e-5
  with pytest.raises(ValueError, match="F=16"):
    model.encode(torch.zeros(1, 16, SAE["window"], SAE["feature_dim"]))


@pytest.mark.slow
def test_a2v_dit_forward_parity_with_audio(ckpt):
  from read_jax.models import a2v_dit
  from read_jax.torch.a2v_dit import A2VDiT as TorchA2VDiT
  root, out = ckpt
  config, params = native.load_module(os.path.join(root, "a2v_dit"), "a2v_dit")
  model = a2v_dit.build_model(config)
  ref = TorchA2VDiT.from_exported(out)
  rng = np.random.default_rng(2)
  b, frames, h, w = 2, 4, 3, 2
  x = rng.standard_normal((b, frames, h, w, 5)).astype(np.float32)
  t = rng.uniform(size=(b, frames)).astype(np.float32)
  t[:, 0] = 0  # the reference frame is clean
  speech = rng.standard_normal((b, frames - 1, 2, SAE["latent_dim"])).astype(np.float32)
  text, mask = load_text_embedding(os.path.join(root, "prompt.safetensors"), 12)
  mask = np.concatenate([np.asarray(mask), np.zeros_like(mask)])  # row 1: no prompt → no text update
  text = np.concatenate([np.asarray(text)] * 2)
  apply = jax.jit(model.apply)
  got = np.asarray(apply({"params": params}, x, t, speech, text, mask))
  with torch.no_grad():
    tt = lambda a: torch.from_numpy(np.asarray(a))  # noqa: E731
    want = ref(tt(x), tt(t), tt(speech), tt(text), tt(mask)).numpy()
    no_audio = ref(tt(x), tt(t), None, tt(text), tt(mask)).numpy()
  assert _rel(got, want) < 1e-5
  # The audio attention really acts, and the no-audio paths agree too.
  assert _rel(no_audio, want) > 1e-2
  got_no_audio = np.asarray(apply({"params": params}, x, t, None, text, mask))
  assert _rel(got_no_audio, no_audio) < 1e-5
  # Frame-level (Eq. 10): within one block, C_k reaches latent frame k only, and frame 0 attends to none.
  ref.transformer_blocks = ref.transformer_blocks[:1]
  other = speech.copy()
  other[:, 1] += 1.0  # C_2 changed
  with torch.no_grad():
    a, b_ = (ref(tt(x), tt(t), tt(sp), tt(text), tt(mask)).numpy() for sp in (speech, other))
  changed = np.abs(a - b_).reshape(b, frames, -1).max(-1)  # [B, T]
  assert np.all(changed[:, 2] > 1e-4) and not np.any(changed[:, [0, 1, 3]]), changed


def test_modules_saved_from_pytorch_import_back_exactly(ckpt, tmp_path):
  """A2VDiT / SpeechAE save_exported (after PyTorch-side work) → import-torch → the same params."""
  from read_jax.torch.a2v_dit import A2VDiT as TorchA2VDiT
  from read_jax.torch.speech_ae import SpeechAE as TorchSpeechAE
  root, out = ckpt
  again = tmp_path / "again"
  TorchA2VDiT.from_exported(out).save_exported(str(again))
  TorchSpeechAE.from_exported(os.path.join(out, "speech_ae")).save_exported(str(again / "speech_ae"))
  assert sorted(import_torch(str(again), str(tmp_path / "back"))) == ["a2v_dit", "speech_ae"]
  for part in ("a2v_dit", "speech_ae"):
    ca, pa = native.load_module(os.path.join(root, part), part)
    cb, pb = native.load_module(str(tmp_path / "back" / part), part)
    assert ca == cb
    fa, fb = flatten(pa), flatten(pb)
    assert sorted(fa) == sorted(fb)
    for k in fa:
      np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


def test_import_errors_are_clear(ckpt, tmp_path):
  root, out = ckpt
  with pytest.raises(CheckpointError, match="no such checkpoint directory"):
    export_torch(str(tmp_path / "nope"), str(tmp_path / "o"))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(CheckpointError, match="not a read_jax checkpoint directory"):
    export_torch(str(empty), str(tmp_path / "o"))
  with pytest.raises(CheckpointError, match="not an export-torch directory"):
    import_torch(str(empty), str(tmp_path / "o"))
  # A renamed audio key is reported by name.
  bad = tmp_path / "bad"
  shutil.copytree(out, bad)
  path = bad / "audio_attention" / "model.safetensors"
  tensors = read_safetensors(str(path))
  tensors["transformer_blocks.1.audio_attn.to_qq.weight"] = tensors.pop("transformer_blocks.1.audio_attn.to_q.weight")
  write_safetensors(str(path), tensors)
  with pytest.raises(CheckpointError, match=r"to_qq.weight") as e:
    import_torch(str(bad), str(tmp_path / "o2"))
  assert "layers [1] missing" in str(e.value)


# ------------------------------------------------------------------------------------------------
# import-ltx / import-whisper / stage_params / encode_prompt


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """A tiny diffusers LTX-Video directory (transformer/ with 3 blocks, vae/) and a tiny transformers Whisper."""
  from configs.vae_ltx import get_config
  from read_jax.models.vae import make_config
  transformers = pytest.importorskip("transformers")
  root = tmp_path_factory.mktemp("pretrained")
  torch.manual_seed(0)
  diffusers.LTXVideoTransformer3DModel(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=6,
                                       cross_attention_dim=12, caption_channels=12, num_layers=3).save_pretrained(
      str(root / "ltx" / "transformer"), safe_serialization=True)
  cfg = make_config(get_config("tiny"))
  diffusers.AutoencoderKLLTXVideo(**{k: v for k, v in cfg.to_diffusers().items() if k != "_class_name"}
                                  ).save_pretrained(str(root / "ltx" / "vae"), safe_serialization=True)
  wcfg = transformers.WhisperConfig(d_model=24, encoder_layers=2, encoder_attention_heads=3, encoder_ffn_dim=80,
                                    decoder_layers=1, decoder_attention_heads=3, decoder_ffn_dim=16, num_mel_bins=80,
                                    max_source_positions=50, max_target_positions=16, vocab_size=64,
                                    pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
  transformers.WhisperForConditionalGeneration(wcfg).save_pretrained(str(root / "whisper"), safe_serialization=True)
  return root


def _tiny_dit_config():
  from read_jax.config import load_config
  c = dict(load_config("a2v_dit:tiny").model)
  c.update(head_dim=6, cross_attention_dim=12, audio_dim=SAE["latent_dim"])
  return c


@pytest.mark.slow
def test_import_ltx_and_whisper_build_a_loadable_checkpoint(pretrained, tmp_path):
  from read_jax.convert import checkpoint_dir as cd
  out = str(tmp_path / "ckpt")
  with pytest.warns(UserWarning, match="3 transformer blocks"):
    cd.import_ltx(str(pretrained / "ltx"), out, config=_tiny_dit_config(), num_layers=2)
  with pytest.raises(CheckpointError, match=r"missing speech_encoder/ \(from scripts/convert.py import-whisper\); "
                                            "speech_ae/"):
    cd.check_complete(out)
  cd.import_whisper(str(pretrained / "whisper"), out)
  with pytest.raises(CheckpointError, match="feature_dim 7 vs speech_encoder width 24"):
    cd.init_speech_ae(out, dict(SAE))
  cd.init_speech_ae(out, dict(SAE, feature_dim=24))
  cd.check_complete(out)
  config, params = native.load_module(os.path.join(out, "a2v_dit"), "a2v_dit")
  assert config["num_layers"] == 2 and config["head_dim"] == 6
  assert not np.any(params["transformer_blocks"]["audio_attn"]["to_out_0"]["kernel"])  # starts as LTX (paper C.1)
  ltx = diffusers.LTXVideoTransformer3DModel.from_pretrained(str(pretrained / "ltx" / "transformer"))
  np.testing.assert_array_equal(params["transformer_blocks"]["attn1"]["to_q"]["kernel"][1],
                                ltx.transformer_blocks[1].attn1.to_q.weight.detach().numpy().T)
  # Training init: the params a stage uses, checked against the stage's shapes.
  from read_jax.models import a2v_dit
  expected = {"dit": a2v_dit.param_shapes(a2v_dit.build_model(config)),
              "speech_ae": speech_ae_shapes(dict(SAE, feature_dim=24))}
  tree = cd.stage_params(out, "a2v_dit", expected)
  assert sorted(tree) == ["dit", "speech_ae"]
  assert flatten(tree["dit"]).keys() == flatten(params).keys()
  assert sorted(cd.stage_params(out, "speechae")) == ["decoder", "encoder"]
  with pytest.raises(CheckpointError, match="does not match the model"):
    cd.stage_params(out, "speechae", speech_ae_shapes(SAE))
  with pytest.raises(CheckpointError, match="needs speech_ae/"):
    cd.stage_params(str(pretrained / "ltx"), "speechae")
  # The pipeline accepts it.
  from read_jax.pipeline import ReadPipeline
  with pytest.warns(UserWarning, match="no prompt embedding file"):
    pipe = ReadPipeline.from_pretrained(out)
  assert pipe.dit.num_layers == 2 and pipe.speech_encoder.width == 24


def test_import_ltx_errors(tmp_path):
  from read_jax.convert import checkpoint_dir as cd
  (tmp_path / "half" / "transformer").mkdir(parents=True)
  with pytest.raises(CheckpointError, match="needs transformer/ and vae/; missing vae/"):
    cd.import_ltx(str(tmp_path / "half"), str(tmp_path / "o"))
  with pytest.raises(CheckpointError, match="expected a diffusers LTX-Video directory"):
    cd.import_ltx(str(tmp_path / "ltx.ckpt"), str(tmp_path / "o"))


def test_convert_script_round_trip(ckpt, tmp_path, capsys):
  import scripts.convert as convert
  root, out = ckpt
  assert cli.run(convert.main, ["import-torch", "--torch", out, "--out", str(tmp_path / "back")]) == 0
  assert "wrote vae, speech_encoder, speech_ae, a2v_dit" in capsys.readouterr().out
  assert cli.run(convert.main, ["export-torch", "--ckpt", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
  assert "--ckpt" in capsys.readouterr().err


def test_encode_prompt_with_a_tiny_local_t5(tmp_path):
  transformers = pytest.importorskip("transformers")
  tokenizers = pytest.importorskip("tokenizers")
  import scripts.encode_prompt as encode_prompt
  t5 = tmp_path / "t5"
  torch.manual_seed(0)
  model = transformers.T5EncoderModel(transformers.T5Config(vocab_size=40, d_model=12, d_kv=4, d_ff=16, num_layers=1,
                                                            num_heads=2)).eval()
  model.save_pretrained(str(t5), safe_serialization=True)
  # A tokenizer built offline: a Unigram vocabulary wrapped as T5's fast tokenizer.
  vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"▁{w}", -1.0) for w in "a person is talking".split()]
  tok = tokenizers.Tokenizer(tokenizers.models.Unigram(vocab + [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz▁"],
                                                        unk_id=2))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace()
  transformers.T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                               extra_ids=0).save_pretrained(str(t5))
  out = str(tmp_path / "prompt.safetensors")
  assert encode_prompt.main(["--t5", str(t5), "--out", out, "--prompt", "a person is talking", "--max-length", "8"]) == 0
  got = read_safetensors(out)
  np.testing.assert_array_equal(got["prompt_attention_mask"], [1, 1, 1, 1, 1, 0, 0, 0])
  with torch.no_grad():
    ids = torch.tensor([[3, 4, 5, 6, 1, 0, 0, 0]])
    want = model(input_ids=ids, attention_mask=(ids > 0) | (ids == 1)).last_hidden_state[0].numpy()
  np.testing.assert_allclose(got["prompt_embeds"], want, rtol=1e-6, atol=1e-6)
  assert got["prompt_embeds"].shape == (8, 12)
  # Pre-tokenised ids give the same file without the tokenizer.
  out2 = str(tmp_path / "p2.safetensors")
  assert encode_prompt.main(["--t5", str(t5), "--out", out2, "--input-ids", "3,4,5,6,1", "--max-length", "8"]) == 0
  np.testing.assert_array_equal(read_safetensors(out2)["prompt_embeds"], got["prompt_embeds"])
