"""The speech-encoder seam (read_jax.speech.SpeechEncoder, read_jax.convert.speech_encoders): a second encoder is
its module, a converter and one registry entry — nothing else in the package changes.

The dry run: a stub raw-waveform encoder (a linear map of each 20 ms frame, in this file), registered for the test
only, runs through ReadPipeline.from_configs, generation, save_pretrained / from_pretrained and a live session. An
older checkpoint's whisper/ part still loads as the speech encoder."""

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from read_jax import live
from read_jax.config import load_config
from read_jax.constants import STATE_SAMPLES
from read_jax.convert import checkpoint_dir, speech_encoders
from read_jax.files import read_safetensors, write_json, write_safetensors
from read_jax.pipeline import ReadPipeline
from read_jax.speech import SpeechEncoder

WIDTH = 12


@dataclasses.dataclass(frozen=True, eq=False)
class StubEncoder(SpeechEncoder):
  """States on the 50 Hz grid: tanh of each 320-sample frame times a [320, D] matrix."""

  weight: jax.Array  # [320, D]
  kind = "stub"
  window_samples = 4 * 16000
  dtype = jnp.float32

  @property
  def width(self):
    return self.weight.shape[1]

  def encode(self, windows):
    frames = jnp.asarray(windows, jnp.float32).reshape(windows.shape[0], -1, STATE_SAMPLES)  # [B, n/320, 320]
    return jnp.tanh(frames @ self.weight)  # [B, n/320, D]

  def on_device(self, device):
    return StubEncoder(jax.device_put(self.weight, device))


def _save(encoder, path):
  os.makedirs(path, exist_ok=True)
  write_json(os.path.join(path, "config.json"), {"kind": "stub", "width": encoder.width})
  write_safetensors(os.path.join(path, "weights.safetensors"), {"weight": np.asarray(encoder.weight)})


def _recognises(path):
  config = os.path.join(path, "config.json")
  return os.path.isfile(config) and json.load(open(config)).get("kind") == "stub"


STUB = speech_encoders.EncoderKind(
  recognises=_recognises,
  load=lambda path, dtype=jnp.float32: StubEncoder(jnp.asarray(read_safetensors(
      os.path.join(path, "weights.safetensors"))["weight"], dtype)),
  save=_save,
  init=lambda key, config: StubEncoder(0.05 * jax.random.normal(key, (STATE_SAMPLES, config.width))),
  width=lambda path: json.load(open(os.path.join(path, "config.json")))["width"])


@pytest.fixture
def stub_kind(monkeypatch):
  monkeypatch.setitem(speech_encoders.KINDS, "stub", STUB)


def _config():
  config = load_config("demo.py:tiny")
  config.unlock()
  config.speech_encoder = ml_collections.ConfigDict(dict(kind="stub", width=WIDTH))
  config.speech_ae.feature_dim = WIDTH
  config.pipeline.speech_window = "live:2"
  return config


def _speech(seconds, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * 16000)) / 16000
  return (0.3 * np.sin(2 * np.pi * 200 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) +
          0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.slow
def test_a_second_encoder_is_a_module_a_converter_and_a_registry_entry(stub_kind, tmp_path):
  face = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
  pipe = ReadPipeline.from_config(jax.random.key(0), _config())
  assert isinstance(pipe.speech_encoder, StubEncoder) and pipe.speech_encoder.width == WIDTH
  # A fresh A2V-DiT's audio attention outputs zero (docs/design.md §3.4): give it weights, so speech moves the video.
  out = pipe.dit_params["transformer_blocks"]["audio_attn"]["to_out_0"]
  out["kernel"] = 0.5 * jax.random.normal(jax.random.key(5), out["kernel"].shape)
  frames = pipe.generate(face, _speech(1.0), seed=3)
  assert frames.shape == (25, 64, 64, 3)
  # The speech reaches the video through the stub: other speech, other frames.
  assert np.abs(frames.astype(int) - pipe.generate(face, _speech(1.0, seed=9) * 0.2, seed=3)).mean() > 0.1

  pipe.save_pretrained(str(tmp_path / "ckpt"))
  assert speech_encoders.kind_of(str(tmp_path / "ckpt" / "speech_encoder")) == "stub"
  checkpoint_dir.check_complete(str(tmp_path / "ckpt"))  # the widths fit: the stub's, from its config
  loaded = ReadPipeline.from_pretrained(str(tmp_path / "ckpt"))
  np.testing.assert_array_equal(loaded.generate(face, _speech(1.0), seed=3), frames)

  session = live.LiveSession(loaded, face, seed=3, mode="clip")
  session.feed(_speech(1.0))
  live_frames = np.concatenate([b.frames for b in session.finish()])
  assert np.abs(live_frames.astype(int) - frames).max() <= 1  # the live windows of the same policy


def test_unknown_kinds_and_mismatched_widths_are_one_error(stub_kind, tmp_path):
  from read_jax.errors import CheckpointError
  pipe = ReadPipeline.from_config(jax.random.key(0), _config())
  pipe.save_pretrained(str(tmp_path / "ckpt"))
  with open(tmp_path / "ckpt" / "speech_encoder" / "config.json", "w") as fh:
    json.dump({"kind": "stub", "width": WIDTH + 1}, fh)
  with pytest.raises(CheckpointError, match=f"speech_ae feature_dim {WIDTH} vs speech_encoder width {WIDTH + 1}"):
    checkpoint_dir.check_complete(str(tmp_path / "ckpt"))
  with open(tmp_path / "ckpt" / "speech_encoder" / "config.json", "w") as fh:
    json.dump({"kind": "rnn"}, fh)
  with pytest.raises(CheckpointError, match=r"speech_encoder: not a speech encoder this read_jax reads \(known"):
    ReadPipeline.from_pretrained(str(tmp_path / "ckpt"))
  with pytest.raises(CheckpointError, match="speech_encoder.kind: 'rnn'"):
    speech_encoders.init_speech_encoder(jax.random.key(0), ml_collections.ConfigDict(dict(kind="rnn")))


def test_an_older_checkpoints_whisper_part_loads(tiny_checkpoint, tmp_path):
  """Checkpoints written before the part was named by its role hold whisper/: it is the speech encoder."""
  old = tmp_path / "old"
  shutil.copytree(tiny_checkpoint, old)
  os.rename(old / "speech_encoder", old / "whisper")
  checkpoint_dir.check_complete(str(old))
  pipe = ReadPipeline.from_pretrained(str(old))
  assert pipe.speech_encoder.kind == "whisper" and speech_encoders.part_path(str(old)) == str(old / "whisper")
