"""LiveSession (read_jax.live): push-style generation equals the offline streaming order, whatever the chunking.

On the bundled demo (64² frames, clips of 8 latent frames = 57 video frames, 1 s Whisper windows: "live:1").
Tolerance: the session encodes its speech latents from fixed-size windows and the offline path from the whole
S, so the float rounding of different array shapes differs (≈1e-7 relative); after the denoiser and the VAE
that moves a handful of uint8 values by one level. The test allows ≤ 1 level on ≤ 1e-4 of the values.
"""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from read_jax import audio as audio_lib
from read_jax import live, media, speech
from read_jax.errors import AudioError
from read_jax.constants import FRAMES_PER_LATENT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "assets", "demo")
PORTRAIT = os.path.join(DEMO, "reference.png")
SR = audio_lib.SAMPLE_RATE
POLICY = "live:1"  # the demo Whisper's windows are 1 s
SECONDS = 3.1  # 77 frames: clip 0 (57 frames) comes out during the feed, clip 1 at finish
MAX_DIFF_FRACTION = 1e-4


@pytest.fixture(scope="module")
def pipe(demo_pipeline):
  # The offline reference uses the same windows; these tests are clip mode's (the rolling window: test_rolling.py).
  return demo_pipeline.with_config(speech_window=POLICY, live_mode="clip")


@pytest.fixture(scope="module")
def pcm():
  """The demo speech as int16 PCM (so the int16 and float feeds see identical samples)."""
  wave = audio_lib.load_audio(os.path.join(DEMO, "speech.wav"))[:int(SECONDS * SR)]
  return np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)


def _float(pcm):
  return pcm.astype(np.float32) / 32768


@pytest.fixture(scope="module")
def offline(pipe, pcm):
  return pipe.generate(PORTRAIT, _float(pcm), seed=0)


def _chunks(pcm, kind):
  if kind == "20ms_int16":
    return [pcm[i:i + 320] for i in range(0, pcm.shape[0], 320)]
  if kind == "random_float":
    rng = np.random.RandomState(0)
    cuts = np.cumsum(rng.randint(1, 4000, size=pcm.shape[0]))
    cuts = cuts[cuts < pcm.shape[0]]
    return np.split(_float(pcm), cuts)
  return [_float(pcm)]  # one big chunk


def _run(session, chunks):
  """Feed the chunks, collecting (samples fed when it came out, block); then finish."""
  out, fed = [], 0
  for c in chunks:
    session.feed(c)
    fed += len(c)
    out += [(fed, b) for b in session.frames()]
  out += [(None, b) for b in session.finish()]
  return out


def _assert_close(frames, reference):
  assert frames.shape == reference.shape and frames.dtype == np.uint8
  diff = np.abs(frames.astype(np.int16) - reference.astype(np.int16))
  assert diff.max() <= 1, diff.max()
  assert (diff > 0).mean() <= MAX_DIFF_FRACTION, (diff > 0).mean()


def test_speech_latents_equal_the_whole_encode(pipe, pcm):
  """The bounded-history re-encode gives every latent the whole S's encode gives (the causal convs' history)."""
  assert live.history_groups(pipe.speech_ae) == 1  # K = 3: latent k reads groups k − 1 and k
  n = 15
  s = np.asarray(pipe.speech_features(_float(pcm), n))  # [1 + 8·14, 10, D]
  whole = np.asarray(pipe.encode_speech(jnp.asarray(s)[None])[0])  # [n, hw, dA]
  session = live.LiveSession(pipe, PORTRAIT)
  for lo in range(0, s.shape[0], 5):  # rows arriving in pieces that cut across latent groups
    session._add_rows(s[lo:lo + 5])
  got = np.stack(session._latents)
  assert got.shape == whole.shape
  np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-5 * np.abs(whole).max())
  # A too-short history would break it: latent k re-encoded from group k alone differs.
  k = 5
  window = np.concatenate([s[8 * k - 8:8 * k - 7], s[8 * k - 7:8 * k + 1]])  # stand-in frame + group k
  alone = np.asarray(pipe.encode_speech(jnp.asarray(window)[None])[0, 1])
  assert np.abs(alone - whole[k]).max() > 1e-3


@pytest.mark.parametrize("kind", ["20ms_int16", "random_float", "one_chunk"])
def test_clip_mode_equals_offline(pipe, pcm, offline, kind):
  session = live.LiveSession(pipe, PORTRAIT, seed=0, policy=POLICY)
  chunks = _chunks(pcm, kind)
  out = _run(session, chunks)
  frames = np.concatenate([b.frames for _, b in out])
  assert frames.shape[0] == audio_lib.num_video_frames(pcm.shape[0]) == 77  # exact
  _assert_close(frames, offline)
  # Blocks tile the video in order, with their timestamps.
  first = 0
  for j, (_, b) in enumerate(out):
    assert b.index == j and b.first_frame == first
    np.testing.assert_allclose(b.times, np.arange(first, first + len(b.frames)) / 25)
    first += len(b.frames)
  # Clip 0 comes out as soon as its last latent frame (7) and the 140 ms look-ahead are in, not before.
  policy = speech.window_policy(POLICY)
  need = int(policy.window_end(pipe.config.clip_frames - 1))  # 5120·7 + 2240 samples
  fed_at, block0 = out[0]
  assert block0.frames.shape[0] == 1 + FRAMES_PER_LATENT * (pipe.config.clip_frames - 1)
  ends = np.cumsum([len(c) for c in chunks])
  expected = int(ends[np.searchsorted(ends, need)])  # the first feed that completes the audio it needs
  assert fed_at == expected
  assert [fed for fed, _ in out[1:]] == [None]  # clip 1 needs audio past the end: at finish


def test_sessions_are_independent(pipe, pcm, offline):
  """Two sessions fed alternately (other portrait and seed) give what each gives alone."""
  other = np.asarray(media.load_reference_image(PORTRAIT, pipe.config.resolution, detector=None))[:, ::-1]
  other = np.round((other + 1) * 127.5).astype(np.uint8)  # the mirrored portrait
  b_alone = _run(live.LiveSession(pipe, other, seed=3, policy=POLICY), _chunks(pcm, "one_chunk"))
  a = live.LiveSession(pipe, PORTRAIT, seed=0, policy=POLICY)
  b = live.LiveSession(pipe, other, seed=3, policy=POLICY)
  blocks = {"a": [], "b": []}
  for c in _chunks(pcm, "20ms_int16"):
    a.feed(c)
    blocks["a"] += list(a.frames())
    b.feed(c)
    blocks["b"] += list(b.frames())
  blocks["b"] += b.finish()
  blocks["a"] += a.finish()
  frames_a = np.concatenate([x.frames for x in blocks["a"]])
  frames_b = np.concatenate([x.frames for x in blocks["b"]])
  _assert_close(frames_a, offline)
  np.testing.assert_array_equal(frames_b, np.concatenate([x.frames for _, x in b_alone]))
  assert np.abs(frames_a.astype(int) - frames_b.astype(int)).mean() > 1  # they are different videos


def test_silence_keeps_the_video_going(pipe, pcm):
  """Silence is audio like any other: clips keep coming out while only zeros are fed."""
  speech_part = pcm[:SR // 2]
  silence = np.zeros(3 * SR, np.int16)
  session = live.LiveSession(pipe, PORTRAIT, seed=0, policy=POLICY)
  during_silence = []
  session.feed(speech_part)
  assert not list(session.frames())  # 0.5 s is not a whole clip yet
  for lo in range(0, silence.shape[0], 320):
    session.feed(silence[lo:lo + 320])
    during_silence += list(session.frames())
  assert [b.index for b in during_silence] == [0]  # clip 0 (latent frames 0 … 7) from silent audio
  rest = session.finish()
  frames = np.concatenate([b.frames for b in during_silence + rest])
  wave = np.concatenate([_float(speech_part), _float(silence)])
  assert frames.shape[0] == audio_lib.num_video_frames(wave.shape[0]) == 87
  _assert_close(frames, pipe.generate(PORTRAIT, wave, seed=0))


def test_feed_checks_its_input(pipe):
  session = live.LiveSession(pipe, PORTRAIT, policy=POLICY)
  with pytest.raises(AudioError, match=r"\[-1, 1\]"):
    session.feed(np.full(10, 1.5, np.float32))
  with pytest.raises(AudioError, match="mono"):
    session.feed(np.zeros((10, 2), np.float32))
  with pytest.raises(AudioError, match="int16"):
    session.feed(np.zeros(10, np.int32))
  with pytest.raises(AudioError, match="shorter than one video frame"):
    session.finish()
  with pytest.raises(ValueError, match="after finish"):
    session.feed(np.zeros(10, np.float32))


def test_run_live_measures_latency(pipe, pcm, tmp_path):
  """A real-time replay of 1 s: everything waits for the end (clip 0 needs 2.38 s), so frame 0 is ≥ 1 s late."""
  wave = _float(pcm[:SR])
  out = tmp_path / "live.mp4"
  stats = live.run_live(pipe, PORTRAIT, wave, str(out), realtime=True, policy=POLICY)
  assert stats.frames == 25 and stats.blocks == 1
  assert stats.first >= 0.98 and stats.worst == pytest.approx(stats.first)  # frame 0 waited longest
  assert stats.first - stats.mean == pytest.approx(12 / 25, abs=1e-6)  # one block: latency falls 1/25 per frame
  assert stats.wall >= 1.0
  assert media.probe(str(out))["video_frames"] == 25
