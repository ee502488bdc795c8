"""Flax Whisper encoder: parity with transformers, weight loading, long audio, per-video-frame windows."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from read_jax import audio
from read_jax.config import load_config
from read_jax.convert import CheckpointError
from read_jax.convert.torch_layout import torch_to_flax
from read_jax.convert.whisper import config_from_hf, encoder_param_shapes, load_whisper_encoder, whisper_config
from read_jax.models.whisper import encode, encoder_from_config
from read_jax.speech import WhisperSpeechEncoder, encode_long, speech_features

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
SR = 16000


def hf_config(**kw):
  """A small random WhisperConfig; odd sizes so a swapped axis cannot pass (head dim 8, 13 mels, 37 positions)."""
  base = dict(d_model=24, encoder_layers=2, encoder_attention_heads=3, encoder_ffn_dim=40, decoder_layers=1,
              decoder_attention_heads=3, decoder_ffn_dim=16, num_mel_bins=13, max_source_positions=37,
              max_target_positions=8, vocab_size=50, pad_token_id=0, bos_token_id=1, eos_token_id=2,
              decoder_start_token_id=1)
  base.update(kw)
  return transformers.WhisperConfig(**base)


def torch_model(config, cls="WhisperModel", seed=0):
  torch.manual_seed(seed)
  model = getattr(transformers, cls)(config).eval()
  with torch.no_grad():  # random biases and LayerNorm affines, so a dropped or swapped one shows
    for name, p in model.named_parameters():
      if name.endswith("bias") or "layer_norm" in name:
        p.add_(0.1 * torch.randn_like(p))
  return model


def torch_encode(model, mel):  # mel [B, L, n_mels] channels last
  encoder = model.get_encoder() if hasattr(model, "get_encoder") else model.encoder
  with torch.no_grad():
    return encoder(torch.from_numpy(np.ascontiguousarray(mel.transpose(0, 2, 1)))).last_hidden_state.numpy()


def encoder_state_dict(model):
  return {k[len("encoder."):]: v.numpy() for k, v in model.state_dict().items() if k.startswith("encoder.")}


def rel_err(a, b):
  return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def small():
  config = hf_config()
  model = torch_model(config)
  encoder = encoder_from_config(config_from_hf(config.to_dict()))
  params = torch_to_flax(encoder_state_dict(model), encoder_param_shapes(encoder))
  return model, encoder, params


def test_encoder_parity_with_transformers(small):
  model, encoder, params = small
  mel = np.random.default_rng(0).standard_normal((2, 74, 13)).astype(np.float32)
  ours = encode(encoder, params, mel)
  assert ours.shape == (2, 37, 24)
  assert rel_err(ours, torch_encode(model, mel)) <= 1e-5


def test_encoder_rejects_wrong_input_length(small):
  _, encoder, params = small
  with pytest.raises(ValueError, match=r"expected log-mel \[B, 74, 13\]"):
    encoder.apply({"params": params}, jnp.zeros((1, 72, 13)))


def test_bfloat16_compute_stays_close(small):
  model, encoder, params = small
  mel = np.random.default_rng(1).standard_normal((1, 74, 13)).astype(np.float32)
  out = encode(encoder.clone(dtype=jnp.bfloat16), params, mel)
  assert out.dtype == jnp.bfloat16
  assert rel_err(out.astype(jnp.float32), torch_encode(model, mel)) < 0.05


def test_tiny_config_param_count_equals_transformers():
  config = whisper_config("tiny")
  assert (config.d_model, config.num_layers, config.num_heads, config.ffn_dim, config.num_mel_bins,
          config.max_source_positions) == (384, 4, 6, 1536, 80, 1500)
  assert load_config("whisper:tiny").to_dict() == {"kind": "whisper", **config.to_dict()}  # a speech_encoder section
  hf = transformers.WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                                  decoder_layers=4, decoder_attention_heads=6, decoder_ffn_dim=1536,
                                  num_mel_bins=80, max_source_positions=1500)
  with torch.device("meta"):
    reference = transformers.WhisperModel(hf)
  expected = sum(p.numel() for p in reference.encoder.parameters())
  shapes = encoder_param_shapes(encoder_from_config(config))
  assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes)) == expected == 8_208_384
  # the key sets agree too (the count could match by accident)
  torch_to_flax({k: np.zeros(v.shape, np.float32) for k, v in reference.encoder.state_dict().items()}, shapes)


@pytest.mark.parametrize("cls", ["WhisperModel", "WhisperForConditionalGeneration"])
def test_load_from_save_pretrained(tmp_path, cls):
  config = hf_config(encoder_layers=3)
  model = torch_model(config, cls, seed=1)
  model.save_pretrained(tmp_path, safe_serialization=True)
  encoder, params = load_whisper_encoder(str(tmp_path))
  assert encoder.num_layers == 3 and encoder.d_model == 24 and encoder.max_source_positions == 37
  mel = np.random.default_rng(2).standard_normal((1, 74, 13)).astype(np.float32)
  assert rel_err(encode(encoder, params, mel), torch_encode(model, mel)) <= 1e-5


def test_load_errors_list_the_keys(tmp_path):
  with pytest.raises(CheckpointError, match="not a directory"):
    load_whisper_encoder(str(tmp_path / "nope"))
  torch_model(hf_config()).save_pretrained(tmp_path, safe_serialization=True)
  config_path = tmp_path / "config.json"
  config = json.loads(config_path.read_text())
  config["encoder_ffn_dim"] = 44  # every fc1/fc2 is now mis-shaped
  config["encoder_layers"] = 3  # layer 2 is missing
  config_path.write_text(json.dumps(config))
  with pytest.raises(CheckpointError) as err:
    load_whisper_encoder(str(tmp_path))
  message = str(err.value)
  assert "missing" in message and "layers.2.fc1.weight" in message
  assert "mis-shaped" in message and "layers.0.fc1.weight" in message
  assert str(tmp_path) in message


def test_long_audio_is_encoded_window_by_window_at_50hz():
  """65 s → 3250 frames at 50 Hz; each 30 s window equals transformers' features + encoder on that window."""
  config = hf_config(d_model=16, encoder_attention_heads=2, encoder_ffn_dim=24, encoder_layers=1, num_mel_bins=80,
                     decoder_attention_heads=2, max_source_positions=1500)
  model = torch_model(config, seed=2)
  encoder = encoder_from_config(config_from_hf(config.to_dict()))
  enc = WhisperSpeechEncoder(encoder, torch_to_flax(encoder_state_dict(model), encoder_param_shapes(encoder)))
  rng = np.random.default_rng(4)
  wave = (0.1 * rng.standard_normal(65 * SR)).astype(np.float32)
  wave[40 * SR:] *= 3.0  # a louder second window: each window's log-mel clamps at its own maximum
  hidden = np.asarray(encode_long(wave, enc))
  assert hidden.shape == (3250, 16)
  extractor = transformers.WhisperFeatureExtractor()
  for w, (start, stop) in enumerate([(0, 1500), (1500, 3000), (3000, 3250)]):
    chunk = wave[w * 30 * SR:(w + 1) * 30 * SR]
    mel = extractor(chunk, sampling_rate=SR, return_tensors="np")["input_features"].transpose(0, 2, 1)
    ref = torch_encode(model, mel)[0, :stop - start]
    assert rel_err(hidden[start:stop], ref) <= 1e-4, w
  s = speech_features(wave, enc)
  assert s.shape == (1625, 10, 16)
  np.testing.assert_array_equal(np.asarray(s[1624, 4]), hidden[3248])


@pytest.fixture(scope="module")
def test_encoder():
  encoder = encoder_from_config(whisper_config("test"))  # 1 s windows, 80 mels
  # Random weights from transformers' initialiser (cheaper here than compiling encoder.init).
  config = hf_config(d_model=24, encoder_layers=2, encoder_attention_heads=3, encoder_ffn_dim=96, num_mel_bins=80,
                     max_source_positions=50)
  assert config_from_hf(config.to_dict()).to_dict() == whisper_config("test").to_dict()
  params = torch_to_flax(encoder_state_dict(torch_model(config, seed=3)), encoder_param_shapes(encoder))
  return encoder, params


@pytest.mark.parametrize("num_samples,num_frames", [(16000, 25), (40_000, 62), (77_440, 121), (700, 1)])
def test_speech_features_shapes(test_encoder, num_samples, num_frames):
  encoder, params = test_encoder
  enc = WhisperSpeechEncoder(encoder, params)
  wave = 0.1 * np.random.default_rng(5).standard_normal(num_samples).astype(np.float32)
  s = speech_features(wave, enc)
  assert s.shape == (num_frames, 10, 24) and np.isfinite(np.asarray(s)).all()
  hidden = np.asarray(encode_long(wave, enc))
  assert hidden.shape == (audio.num_whisper_frames(num_samples), 24)
  np.testing.assert_array_equal(np.asarray(s), audio.frame_windows(hidden, num_frames))
  # any F: extra frames clamp to the last Whisper frame
  more = speech_features(wave, enc, num_frames=num_frames + 3)
  np.testing.assert_array_equal(np.asarray(more[-1]), np.broadcast_to(hidden[-1], (10, 24)))


def test_speech_features_errors(test_encoder):
  encoder, params = test_encoder
  enc = WhisperSpeechEncoder(encoder, params)
  with pytest.raises(ValueError, match="fps must be 25"):
    speech_features(np.zeros(SR, np.float32), enc, fps=30)
  with pytest.raises(audio.AudioError, match="NaN"):
    speech_features(np.full(SR, np.nan, np.float32), enc)


def test_click_lands_in_its_video_frame_through_the_encoder(test_encoder):
  """Perturbation test on the whole path (log-mel → conv stride 2 → layers → windows).

  The background is noise over two whole 1 s windows, so no log-mel value is clamped and a click
  changes only the mel frames it falls in; the encoder's change is largest at the Whisper frame
  under the click (the local conv/residual path), which the windows must place at position 4 of
  video frame round(25τ), position 6 of the frame before and position 2 of the frame after.
  """
  encoder, params = test_encoder
  enc = WhisperSpeechEncoder(encoder, params)
  wave = 0.05 * np.random.default_rng(6).standard_normal(2 * SR).astype(np.float32)
  base = np.asarray(speech_features(wave, enc))  # [50, 10, 24]
  # 0.96 / 1.04: either side of the 1 s window boundary. (Exactly on it, frame 2i is the first of a
  # window, where conv zero-padding weakens the local path, so the test would measure the model, not
  # the alignment.) Checked over 12 random encoders: 84/84 cases hold.
  for tau in (0.08, 0.2, 0.52, 0.96, 1.04, 1.44, 1.8):
    clicked = wave.copy()
    clicked[int(round(tau * SR))] += 2.0
    change = np.linalg.norm(np.asarray(speech_features(clicked, enc)) - base, axis=-1)  # [F, 10]
    i = int(round(25 * tau))
    assert np.argmax(change[:, 4]) == i, tau
    assert np.argmax(change[i]) == 4 and np.argmax(change[i - 1]) == 6 and np.argmax(change[i + 1]) == 2, tau


def test_encode_long_batches_windows_without_changing_the_result(test_encoder):
  encoder, params = test_encoder
  enc = WhisperSpeechEncoder(encoder, params)
  wave = 0.1 * np.random.default_rng(7).standard_normal(int(2.5 * SR)).astype(np.float32)  # 3 windows of 1 s
  one = np.asarray(encode_long(wave, enc))
  two = np.asarray(encode_long(wave, enc, batch_size=2))  # 2 batches, the last half silent
  assert one.shape == two.shape == (125, 24)
  np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="batch_size"):
    encode_long(wave, enc, batch_size=0)
