"""End-to-end generation on a tiny random-weight model: lengths, mp4 streams, determinism, streaming, CLI."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from read_jax import media
from read_jax.config import load_config
from read_jax.pipeline import ReadPipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000


@pytest.fixture(scope="module")
def pipe(tiny_pipeline):
  # configs/demo.py:tiny: 64² frames (2×2 latents), clips of 3 latent frames (17 video frames), 2 steps.
  return tiny_pipeline.with_config()  # its own copy: tests replace its methods


def _speech(seconds, seed=0):
  rng = np.random.RandomState(seed)
  t = np.arange(int(round(seconds * SR))) / SR
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
  return (0.2 * envelope * np.sin(2 * np.pi * 180 * t) + 0.01 * rng.randn(t.size)).astype(np.float32)


def _face(size=(70, 90)):
  return (np.random.RandomState(1).rand(*size, 3) * 255).astype(np.uint8)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("seconds", [1.0, 2.3])
def test_frame_count_follows_audio(pipe, seconds):
  frames = pipe.generate(_face(), _speech(seconds))
  assert frames.dtype == np.uint8 and frames.shape[1:] == (64, 64, 3)
  assert abs(frames.shape[0] - 25 * seconds) <= 1


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_second_pipeline_of_the_same_config_compiles_nothing(pipe, count_compiles):
  """Its programs are cached by what they depend on (the module configs, the CFG mode), not by the instance: a
  second pipeline built from the same config, other weights, generates without one compilation; a setting that
  changes a program's shape (the step count) does compile, so the count can fail."""
  pipe.generate(_face(), _speech(1.0))
  with count_compiles() as compiles:
    other = ReadPipeline.from_config(jax.random.key(1), load_config("demo.py:tiny"))
    frames = other.generate(_face(), _speech(1.0))
  assert compiles.count == 0 and frames.shape == (25, 64, 64, 3)
  assert not np.array_equal(frames, pipe.generate(_face(), _speech(1.0)))  # other weights, other video
  with count_compiles() as compiles:
    other.generate(_face(), _speech(1.0), steps=3)
  assert compiles.count > 0


def test_deterministic_for_a_seed(pipe):
  a = pipe.generate(_face(), _speech(1.0), seed=3)
  b = pipe.generate(_face(), _speech(1.0), seed=3)
  c = pipe.generate(_face(), _speech(1.0), seed=4)
  np.testing.assert_array_equal(a, b)
  assert np.abs(a.astype(int) - c.astype(int)).mean() > 0


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_stream_yields_first_clip_before_the_rest(pipe):
  calls = []
  gen = pipe.stream(_face(), _speech(2.0), progress=lambda done, total: calls.append((done, total)))
  first = next(gen)
  assert calls == [(1, calls[0][1])] and calls[0][1] > 2  # one clip of several computed so far
  assert first.shape[0] == 1 + 8 * 2  # clip 0: 1 + 8(f − 1) frames
  rest = list(gen)
  assert len(calls) == calls[0][1]
  assert first.shape[0] + sum(r.shape[0] for r in rest) == 50


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sample_latents_are_the_latents_stream_decodes(pipe, monkeypatch):
  decoded, decode = [], pipe._decode_pixels
  monkeypatch.setattr(pipe, "_decode_pixels", lambda z, key: decoded.append(np.asarray(z[0])) or decode(z, key))
  frames = pipe.generate(_face(), _speech(2.0), seed=5)  # 50 frames: 8 latent frames (the last one part-used)
  z = pipe.sample_latents(_face(), _speech(2.0), seed=5)
  assert z.shape == (1 + (len(frames) - 1 + 7) // 8,) + decoded[0].shape[1:] and len(decoded) > 2
  # Clip j > 0 begins with clip j−1's last latent: sample_latents keeps it once.
  np.testing.assert_array_equal(decoded[1][0], decoded[0][-1])
  np.testing.assert_array_equal(z, np.concatenate([decoded[0]] + [d[1:] for d in decoded[1:]])[:len(z)])


def test_encode_video_matches_the_reference_encoding(pipe):
  frames = (np.random.RandomState(2).rand(17, 64, 64, 3) * 255).astype(np.uint8)
  z = pipe.encode_video(frames)
  assert z.shape == (3,) + tuple(pipe.reference_latent(frames[0]).shape)
  np.testing.assert_allclose(pipe.encode_video(frames[:1])[0], pipe.reference_latent(frames[0]), atol=1e-5)
  with pytest.raises(ValueError, match="1 \\+ 8k"):
    pipe.encode_video(frames[:5])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_mp4_has_video_and_speech_of_the_right_length(pipe, tmp_path):
  wav = tmp_path / "speech.wav"
  media.write_wav(str(wav), _speech(2.0), SR)
  out = tmp_path / "out.mp4"
  timings = pipe.write_video(_face(), str(wav), str(out))
  info = media.probe(out)
  assert info["video_streams"] == 1 and info["audio_streams"] == 1
  assert info["video"] == "h264" and info["audio"] == "aac"
  assert abs(info["video_frames"] - 50) <= 1
  assert abs(info["video_seconds"] - 2.0) <= 0.04 + 1e-6
  assert abs(info["audio_seconds"] - info["video_seconds"]) <= 0.04 + 1e-6
  assert timings.video_seconds == pytest.approx(2.0) and timings.denoise > 0 and timings.write > 0


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_save_and_load_reproduce_the_video(pipe, tmp_path):
  pipe.save_pretrained(str(tmp_path / "ckpt"))
  loaded = ReadPipeline.from_pretrained(str(tmp_path / "ckpt"))
  assert loaded.config == pipe.config
  np.testing.assert_array_equal(loaded.generate(_face(), _speech(1.0)), pipe.generate(_face(), _speech(1.0)))


def _run_cli(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "sample.py"), *args], capture_output=True,
                        text=True, env=env, timeout=600)


@pytest.mark.slow
def test_cli_bad_inputs_exit_2_and_keep_existing_output(tmp_path):
  existing = tmp_path / "out.mp4"
  existing.write_bytes(b"previous video")
  face = tmp_path / "face.png"
  import PIL.Image
  PIL.Image.fromarray(_face()).save(face)
  empty = tmp_path / "empty.wav"
  media.write_wav(str(empty), np.zeros(0, np.float32), SR)
  ckpt = tmp_path / "ckpt"
  ckpt.mkdir()
  cases = [
      (["--ref", str(tmp_path / "missing.png"), "--audio", str(empty)], "missing.png"),
      (["--ref", str(face), "--audio", str(tmp_path / "missing.wav")], "missing.wav"),
      (["--ref", str(face), "--audio", str(empty), "--ckpt", str(tmp_path / "nockpt")], "nockpt"),
      (["--ref", str(face), "--audio", str(face), "--ckpt", str(ckpt)], str(ckpt)),
  ]
  for args, named in cases:
    r = _run_cli(*args, "--out", str(existing))
    assert r.returncode == 2, (args, r.stderr[-2000:])
    lines = [l for l in r.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and named in lines[0], r.stderr[-2000:]
  assert existing.read_bytes() == b"previous video"
