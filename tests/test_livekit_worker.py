"""The LiveKit avatar (read_jax/serve/livekit.py) driven the way AvatarRunner drives it, without a LiveKit server:
rtc.AudioFrame's pushed in, the generator iterated. Video at 25 fps in the count the audio implies, each frame
followed by the 40 ms of audio it was made from; the frames the engine session's own; AudioSegmentEnd after the
turn's last frame; clear_buffer stops the speech within the blocks already made and drops the turn's end.

The tiny pipeline in rolling mode on conftest's shared engine (tiny_rolling_engine)."""

import asyncio

import numpy as np
import pytest

pytest.importorskip("livekit.agents", reason="the livekit extra is not installed (pip install -e '.[livekit]')")
from livekit import rtc  # noqa: E402
from livekit.agents.voice.avatar import AudioSegmentEnd  # noqa: E402

from read_jax.constants import FRAMES_PER_LATENT  # noqa: E402
from read_jax.live import LiveSession  # noqa: E402
from read_jax.serve.livekit import FRAME_SAMPLES, AvatarVideoGenerator  # noqa: E402

SR = 16000
pytestmark = pytest.mark.slow  # the shared engine compiles at its first use (~15 s); the tests themselves ~1 s each


@pytest.fixture(scope="module")
def engine(tiny_rolling_engine):
  return tiny_rolling_engine


def _portrait() -> np.ndarray:
  return np.random.default_rng(11).integers(0, 256, (40, 44, 3), dtype=np.uint8)


def _speech(seconds: float, rate: int = SR, channels: int = 1, seed: int = 0) -> np.ndarray:
  """int16 [n, channels]: a voiced tone, different in every channel."""
  t = np.arange(int(seconds * rate)) / rate
  rng = np.random.default_rng(seed)
  waves = [0.3 * np.sin(2 * np.pi * (190 + 30 * c) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
           + 0.02 * rng.standard_normal(t.size) for c in range(channels)]
  return (np.stack(waves, axis=1) * 32767).astype(np.int16)


def _audio_frames(pcm: np.ndarray, rate: int = SR, ms: int = 20):
  n = rate * ms // 1000
  return [rtc.AudioFrame(pcm[i:i + n].tobytes(), rate, pcm.shape[1], pcm[i:i + n].shape[0])
          for i in range(0, pcm.shape[0], n)]


async def _drive(gen, pushes, *, video_frames: int, after=None, at: int | None = None):
  """Push ``pushes`` (AudioFrame's and AudioSegmentEnd's), then iterate until ``video_frames`` video frames are out
  (``after(gen)`` once ``at`` of them are); every item, in order."""
  for item in pushes:
    await gen.push_audio(item)
  items, n = [], 0
  stream = gen.__aiter__()
  try:
    async for item in stream:
      items.append(item)
      if isinstance(item, rtc.VideoFrame):
        n += 1
        if n == at:
          after(gen)
        if n == video_frames:
          break
  finally:
    await stream.aclose()
  return items


def _run(gen, pushes, **kwargs):
  return asyncio.run(asyncio.wait_for(_drive(gen, pushes, **kwargs), 120))


def _split(items):
  """(video frames as uint8 [n, H, W, 3], 16 kHz audio of each [n, 640], indices of the segment ends)."""
  video, audio, ends = [], [], []
  for item in items:
    if isinstance(item, rtc.VideoFrame):
      assert item.type == rtc.VideoBufferType.RGBA
      video.append(np.frombuffer(item.data, np.uint8).reshape(item.height, item.width, 4)[..., :3])
    elif isinstance(item, rtc.AudioFrame):
      assert (item.sample_rate, item.num_channels, item.samples_per_channel) == (SR, 1, FRAME_SAMPLES)
      assert len(audio) == len(video) - 1, "each video frame is followed by its audio"
      audio.append(np.frombuffer(item.data, np.int16))
    else:
      assert isinstance(item, AudioSegmentEnd), item
      ends.append(len(video))
  return np.stack(video), np.stack(audio), ends


def test_frames_count_alignment_and_segment_end(engine):
  """1.0 s of 16 kHz speech then AudioSegmentEnd: 25 fps; exactly 25 video frames before the AudioSegmentEnd, each
  followed by its 40 ms of the pushed audio (sample for sample), silence after; the frames are the engine
  session's: those of a LiveSession fed the same speech and silence (≤ 1 level)."""
  speech = _speech(1.0, seed=1)
  gen = AvatarVideoGenerator(engine, _portrait(), seed=5)
  assert gen.options.video_fps == 25 and gen.options.audio_sample_rate == SR
  items = _run(gen, _audio_frames(speech) + [AudioSegmentEnd()], video_frames=40)
  video, audio, ends = _split(items)
  assert ends == [25] and video.shape == (40, 64, 64, 3)
  np.testing.assert_array_equal(audio[:25].reshape(-1), speech[:, 0])
  assert not audio[25:].any()
  alone = LiveSession(engine.pipe, _portrait(), seed=5)
  alone.feed(np.concatenate([speech[:, 0], np.zeros(3 * SR, np.int16)]))
  want = np.concatenate([b.frames for b in alone.finish()])[:40]
  assert np.abs(video.astype(int) - want).max() <= 1
  assert engine.stats()["sessions"] == 0  # the iteration's end closed the session


def test_other_rates_and_channels_are_resampled(engine):
  """0.6 s of 48 kHz stereo: the audio comes back as 16 kHz mono, the turn's end after 15 ± 1 frames."""
  speech = _speech(0.6, rate=48000, channels=2, seed=2)
  gen = AvatarVideoGenerator(engine, _portrait())
  video, audio, ends = _split(_run(gen, _audio_frames(speech, rate=48000) + [AudioSegmentEnd()], video_frames=24))
  assert len(ends) == 1 and abs(ends[0] - 15) <= 1
  assert np.abs(audio[:14].astype(int)).mean() > 1000 and not audio[ends[0] + 1:].any()


def test_clear_buffer_interrupts(engine):
  """4 s of speech pushed at once, clear_buffer after 10 frames: the speech stops within the blocks already made
  (the engine works at most 2 blocks ahead, plus the one being made and the look-ahead), silence follows with the
  video going on, and the interrupted turn's AudioSegmentEnd never comes. Cleared before the stream starts,
  nothing of the speech is used at all."""
  speech = _speech(4.0, seed=3)
  pushes = _audio_frames(speech) + [AudioSegmentEnd()]
  gen = AvatarVideoGenerator(engine, _portrait())
  video, audio, ends = _split(_run(gen, pushes, video_frames=70, after=AvatarVideoGenerator.clear_buffer, at=10))
  spoken = np.flatnonzero(np.abs(audio.astype(int)).max(axis=1) > 0)
  block = FRAMES_PER_LATENT
  assert ends == [] and video.shape[0] == 70
  assert spoken[0] == 0 and 10 <= spoken[-1] < 10 + 4 * block + 4  # of the 100 frames of speech
  np.testing.assert_array_equal(audio[:spoken[-1]].reshape(-1), speech[:FRAME_SAMPLES * spoken[-1], 0])

  gen = AvatarVideoGenerator(engine, _portrait())
  early = asyncio.run(_clear_first(gen, pushes))
  _, audio, ends = _split(early)
  assert ends == [] and not audio.any()


async def _clear_first(gen, pushes):
  for item in pushes:
    await gen.push_audio(item)
  gen.clear_buffer()
  return await asyncio.wait_for(_drive(gen, [], video_frames=20), 120)
