"""The serving engine (read_jax/serve/engine.py): sessions batched into one call give the frames each gets alone;
nothing compiles after start-up however sessions come and go; admission refuses with the measured numbers;
sessions spread over the 8 fake CPU devices.

One tiny pipeline (configs/demo.py:tiny: 64² frames, clips of 3 latent frames = 0.64 s of speech)."""

import threading
import time

import jax
import numpy as np
import pytest

from read_jax.errors import InputError
from read_jax.live import LiveSession
from read_jax.serve.engine import AdmissionError, Engine

pytestmark = pytest.mark.slow  # each engine compiles its batch sizes at start (~10 s)

SR = 16000
ONE = jax.devices()[:1]  # batching tests: every session on one lane (the spread test names its devices)


@pytest.fixture(scope="module")
def pipe(tiny_pipeline):
  return tiny_pipeline


def _inputs(n, seconds, seed=0):
  rng = np.random.default_rng(seed)
  waves = [np.clip(0.3 * rng.standard_normal(int(SR * seconds)), -1, 1).astype(np.float32) for _ in range(n)]
  portraits = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(n)]
  return waves, portraits


def _serve(engine, waves, portraits, chunk=1234, timeout=120):
  """Open one session per wave, feed them interleaved in chunks, end them; {i: frames}, {i: done count}."""
  blocks = {i: [] for i in range(len(waves))}
  done, errors = {}, []
  finished = threading.Event()

  def on_done(i, n):
    done[i] = n
    if len(done) == len(waves):
      finished.set()

  sids = [engine.open(p, seed=i, on_block=lambda b, i=i: blocks[i].append(b), on_done=lambda n, i=i: on_done(i, n),
                      on_error=errors.append) for i, p in enumerate(portraits)]
  for lo in range(0, max(w.size for w in waves), chunk):
    for sid, w in zip(sids, waves):
      if lo < w.size:
        engine.feed(sid, w[lo:lo + chunk])
  for sid in sids:
    engine.end(sid)
  assert finished.wait(timeout), f"sessions did not finish: done {done}, errors {errors}"
  assert not errors, errors
  for i, bs in blocks.items():
    assert [b.first_frame for b in bs] == list(np.cumsum([0] + [b.frames.shape[0] for b in bs[:-1]]))
  return {i: np.concatenate([b.frames for b in bs]) for i, bs in blocks.items()}, done


def _alone(pipe, wave, portrait, seed):
  session = LiveSession(pipe, portrait, seed=seed, mode="clip")  # the engine batches clips
  session.feed(wave)
  return np.concatenate([b.frames for b in session.finish()])


def test_batched_sessions_equal_each_alone_and_nothing_compiles(pipe, count_compiles):
  """3 sessions of different lengths, portraits and seeds through batch sizes (1, 2): each one's frames equal a
  LiveSession run alone (≤ 1 level of rounding), F = floor(25 · seconds) each; then sessions coming and going in
  other numbers and lengths compile nothing."""
  engine = Engine(pipe, batch_sizes=(1, 2), max_sessions=4, realtime_margin=None, devices=ONE).start()
  try:
    waves, portraits = _inputs(3, 1.3, seed=1)
    waves[1] = waves[1][:int(0.55 * SR)]  # ends early: batches shrink while the others go on
    with count_compiles() as compiles:
      frames, done = _serve(engine, waves, portraits)
      for round_ in [(1, 2.1), (4, 0.7), (2, 1.0)]:
        more, _ = _serve(engine, *_inputs(*round_, seed=round_[0]), chunk=777)
    assert compiles.count == 0, f"{compiles.count} compilations after start()"
    stats = engine.stats()
    assert stats["sessions"] == 0 and stats["units_total"] > stats["batches_total"]  # some batches held several
  finally:
    engine.stop()
  for i, (wave, portrait) in enumerate(zip(waves, portraits)):
    alone = _alone(pipe, wave, portrait, seed=i)
    assert frames[i].shape == alone.shape and done[i] == alone.shape[0] == int(25 * wave.size / SR)
    assert np.abs(frames[i].astype(int) - alone).max() <= 1
  assert np.abs(frames[0].astype(int) - frames[2]).mean() > 5  # different sessions, different videos


def test_admission_by_measured_time_and_max_sessions(pipe):
  """max_sessions refuses the next; a margin the measured clip time cannot meet refuses the first, naming the
  numbers; steps other than the engine's are a user error; a cancelled session frees its place."""
  engine = Engine(pipe, batch_sizes=(1,), max_sessions=2, devices=ONE).start()
  try:
    portrait = _inputs(1, 0.1)[1][0]
    assert engine.capacity() >= 1  # the tiny model is far faster than real time
    first = engine.open(portrait)
    engine.open(portrait)
    with pytest.raises(AdmissionError, match="max_sessions"):
      engine.open(portrait)
    engine.cancel(first)
    engine.open(portrait)  # the cancelled one's place
    with pytest.raises(InputError, match="steps"):
      engine.open(portrait, steps=engine.steps + 1)
    engine.cancel(first + 1)
    engine.cancel(first + 2)
    stats = engine.stats()
    assert stats["speech_unit_seconds"] > 0  # each session's Whisper windows and SpeechAE latents, timed at start
    # The batch alone would fit this margin; with the session's own speech it does not.
    engine.realtime_margin = (stats["batch1_unit_seconds"] + stats["speech_unit_seconds"] / 2) / engine.unit_duration
    with pytest.raises(AdmissionError, match=r"s of compute per 0\.64 s of speech"):
      engine.open(portrait)
    engine.realtime_margin = stats["batch1_unit_seconds"] / engine.unit_duration / 10
    with pytest.raises(AdmissionError, match=r"s of compute per 0\.64 s of speech"):
      engine.open(portrait)
    assert engine.capacity() == 0 and engine.stats()["refused_total"] == 3
  finally:
    engine.stop()
  with pytest.raises(AdmissionError, match="not running"):
    engine.open(portrait)


def test_concurrent_opens_admit_only_the_capacity(pipe):
  """Six opens at once against a margin that holds two sessions: two are admitted, four refused with the numbers
  (each open encodes its portrait between the first check and taking its place: the check is made again)."""
  engine = Engine(pipe, batch_sizes=(1, 2), max_sessions=6, devices=ONE).start()
  try:
    lane = engine.lanes[0]
    engine.realtime_margin = (lane.batch_seconds(2) + lane.batch_seconds(3)) / 2 / engine.unit_duration
    assert engine.capacity() == 2
    portraits = _inputs(6, 0.1)[1]
    start, results = threading.Barrier(6), [None] * 6

    def open_one(i):
      start.wait()
      try:
        results[i] = engine.open(portraits[i])
      except AdmissionError as e:
        results[i] = e
    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(6)]
    for t in threads:
      t.start()
    for t in threads:
      t.join(60)
    refused = [r for r in results if isinstance(r, AdmissionError)]
    assert len(refused) == 4 and engine.stats()["sessions"] == 2
    assert all("3 sessions" in str(r) and "real-time capacity" in str(r) for r in refused)
  finally:
    engine.stop()


def test_sessions_spread_over_devices(pipe):
  """With 2 of the 8 fake CPU devices, 4 sessions land two per device (each lane compiled at start: batch size 1
  only, batching is the test above's) and each gives the frames it gives alone."""
  devices = jax.devices()[:2]
  assert len(devices) == 2, "conftest sets 8 fake CPU devices"
  engine = Engine(pipe, batch_sizes=(1,), max_sessions=8, devices=devices, realtime_margin=None).start()
  try:
    waves, portraits = _inputs(4, 0.9, seed=7)
    sids_before = engine.stats()["opened_total"]
    frames, _ = _serve(engine, waves, portraits)
    assert engine.stats()["opened_total"] == sids_before + 4
    assert [lane.units for lane in engine.lanes] == [lane.units for lane in engine.lanes[:1]] * 2  # even spread
  finally:
    engine.stop()
  for i in (0, 3):
    assert np.abs(frames[i].astype(int) - _alone(pipe, waves[i], portraits[i], seed=i)).max() <= 1


def test_stop_finishes_or_cancels(pipe):
  """stop(cancel=False) runs open sessions to their end (on_done); stop(cancel=True) drops them silently."""
  waves, portraits = _inputs(1, 0.8, seed=3)
  for cancel in (False, True):
    engine = Engine(pipe, batch_sizes=(1,), max_sessions=2, realtime_margin=None, devices=ONE).start()
    done = []
    sid = engine.open(portraits[0], on_done=done.append)
    engine.feed(sid, waves[0])
    time.sleep(0.2)
    engine.stop(cancel=cancel)
    assert done == ([] if cancel else [int(25 * 0.8)])
