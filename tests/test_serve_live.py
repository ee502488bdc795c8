"""The server in the checkpoint's live mode (read_jax/serve, docs/serving.md): a checkpoint whose live_mode is the
rolling window is served as rolling sessions, batched across sessions, each session's frames those it gets alone,
and nothing compiles as sessions come and go.

One tiny pipeline (configs/demo.py:tiny with live_mode "rolling": 64² frames, clips of 3 latent frames, one noisy
frame, one block per 0.32 s of speech) and one started engine (batch sizes 1 and 2) for the module."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from read_jax import audio as audio_lib  # noqa: E402
from read_jax.constants import FRAMES_PER_LATENT  # noqa: E402
from read_jax.live import LiveSession, RollingSession  # noqa: E402
from read_jax.serve import app as app_lib  # noqa: E402

SR = audio_lib.SAMPLE_RATE
pytestmark = pytest.mark.slow  # the module's engine compiles batch sizes 1 and 2 of the rolling window (~15 s)


@pytest.fixture(scope="module")
def engine(tiny_rolling_engine):  # conftest's: batch sizes 1 and 2, one lane, started once per test session
  return tiny_rolling_engine


@pytest.fixture(scope="module")
def pipe(engine):
  return engine.pipe  # tiny_pipeline.with_config(live_mode="rolling"): weights and compiled programs shared


def _portrait(seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (48, 48, 3), dtype=np.uint8)


def _png(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, "PNG")  # lossless: the server decodes the same pixels
  return buf.getvalue()


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * SR)) / SR
  wave = 0.3 * np.sin(2 * np.pi * (180 + 40 * seed) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
  return ((wave + 0.02 * rng.standard_normal(t.size)) * 32767).astype("<i2")


def _client(engine, pipe) -> TestClient:
  return TestClient(app_lib.create_app(engine, pipe, app_lib.Limits(max_sessions=4),
                                       security=app_lib.Security(trusted_hosts=("testserver",))))


def _recv(ws) -> dict:
  msg = ws.receive()
  if msg["type"] == "websocket.close":
    return {"close": msg.get("code", 1000)}
  if msg.get("text") is not None:
    return json.loads(msg["text"])
  return {"binary": msg["bytes"]}


def _open(client, seed: int):
  ws = client.websocket_connect("/v1/stream").__enter__()
  ws.send_text(json.dumps({"type": "start", "portrait": base64.b64encode(_png(_portrait(seed))).decode(),
                           "format": "raw", "seed": seed}))
  ready = _recv(ws)
  assert ready["type"] == "ready", ready
  return ws, ready


def _frames_until_done(ws, size: int):
  """Every block's frames, then done (its frame count) and the close."""
  blocks, first = [], 0
  while True:
    msg = _recv(ws)
    if msg.get("type") == "done":
      assert _recv(ws)["close"] == 1000
      return np.concatenate(blocks), msg["frames"]
    assert msg.get("type") == "clip", msg
    assert msg["first_frame"] == first
    data = _recv(ws)["binary"]
    blocks.append(np.frombuffer(data, np.uint8).reshape(msg["frames"], size, size, 3))
    first += msg["frames"]


def _alone(pipe, seed: int, pcm: np.ndarray) -> np.ndarray:
  session = LiveSession(pipe, _portrait(seed), seed=seed)
  session.feed(pcm)
  return np.concatenate([b.frames for b in session.finish()])


def _serve_round(client, engine, pcms, chunk=1600):
  """Sessions opened together, their audio interleaved, ended; each one's frames and done count."""
  opened = [_open(client, seed) for seed in range(len(pcms))]
  kinds = {type(s.live) for lane in engine.lanes for s in lane.sessions.values()}
  for lo in range(0, max(p.size for p in pcms), chunk):
    for (ws, _), pcm in zip(opened, pcms):
      if lo < pcm.size:
        ws.send_bytes(pcm[lo:lo + chunk].tobytes())
  for ws, _ in opened:
    ws.send_text(json.dumps({"type": "end"}))
  out = []
  for ws, ready in opened:
    out.append(_frames_until_done(ws, ready["width"]))
    ws.__exit__(None, None, None)
  return out, kinds, [ready for _, ready in opened]


def test_checkpoint_live_mode_batched_equals_alone_and_nothing_compiles(engine, pipe, count_compiles):
  """The engine takes the checkpoint's live_mode; /v1/info and ready say it; two sessions at once are
  RollingSessions whose units ran batched, each one's frames equal to the session alone (≤ 1 level) and
  floor(25 · seconds) of them; further rounds of 1 and 3 sessions of other lengths compile nothing."""
  assert engine.mode == "rolling"
  client = _client(engine, pipe)
  info = client.get("/v1/info").json()
  assert info["mode"] == "rolling" and info["seconds_per_block"] == pytest.approx(8 / 25)
  before = engine.stats()
  pcms = [_speech(1.1, seed=0), _speech(0.7, seed=1)]
  with count_compiles() as compiles:
    results, kinds, readies = _serve_round(client, engine, pcms)
    for lengths in ([0.5], [0.9, 0.4, 0.6]):
      more, _, _ = _serve_round(client, engine, [_speech(s, seed=i + 2) for i, s in enumerate(lengths)], chunk=999)
      assert [n for _, n in more] == [audio_lib.num_video_frames(int(s * SR)) for s in lengths]
  assert compiles.count == 0, f"{compiles.count} compilations after start()"
  assert kinds == {RollingSession} and {r["mode"] for r in readies} == {"rolling"}
  stats = engine.stats()
  assert stats["units_total"] - before["units_total"] > stats["batches_total"] - before["batches_total"]
  for seed, (pcm, (frames, done)) in enumerate(zip(pcms, results)):
    alone = _alone(pipe, seed, pcm)
    assert frames.shape == alone.shape and done == alone.shape[0] == audio_lib.num_video_frames(pcm.size)
    assert np.abs(frames.astype(int) - alone).max() <= 1
  assert np.abs(results[0][0][:10].astype(int) - results[1][0][:10]).mean() > 5  # different sessions differ


# ---------------------------------------------------------------------------------------------
# Interruption


@pytest.mark.parametrize("mode", ["clip", "rolling"])
def test_session_interrupt_drops_the_queued_audio(pipe, mode):
  """Audio fed ahead of the frames, then interrupt(): what no unit used is dropped (the returned count), at most
  the unit being made plus the look-ahead of old speech stays; the session goes on, and its frames are exactly
  those of a session fed only the audio kept and then what came after (silence here). A repeated interrupt drops
  nothing more; one after the end drops nothing."""
  first, queued, silence = _speech(0.5, seed=3), _speech(1.5, seed=4), np.zeros(int(0.6 * SR), np.int16)
  session = LiveSession(pipe, _portrait(3), seed=3, mode=mode)
  session.feed(first)
  session.feed(queued)
  blocks = [next(session.frames())]  # one unit; the rest of the audio is still queued
  made = session.frames_out
  dropped = session.interrupt()
  kept = session.num_samples
  assert dropped > SR // 2 and kept + dropped == first.size + queued.size
  block = FRAMES_PER_LATENT * (pipe.config.clip_frames - 1 if mode == "clip" else 1) * SR // 25
  assert kept - made * SR // 25 <= block + session.policy.lookahead_samples  # old speech ends within a block
  assert session.interrupt() == 0
  session.feed(silence)
  blocks += list(session.frames()) + session.finish()
  assert session.interrupt() == 0
  frames = np.concatenate([b.frames for b in blocks])

  reference = LiveSession(pipe, _portrait(3), seed=3, mode=mode)
  reference.feed(np.concatenate([first, queued])[:kept])
  reference.feed(silence)
  want = np.concatenate([b.frames for b in reference.finish()])
  assert frames.shape == want.shape and frames.shape[0] == audio_lib.num_video_frames(kept + silence.size)
  assert np.abs(frames.astype(int) - want).max() <= 1


def _session_messages(ws, size: int):
  """Every message until done (and the close): (json messages, frames)."""
  messages, blocks = [], []
  while True:
    msg = _recv(ws)
    if "binary" in msg:
      blocks.append(np.frombuffer(msg["binary"], np.uint8).reshape(-1, size, size, 3))
      continue
    assert msg.get("type") in ("clip", "interrupted", "done"), msg
    messages.append(msg)
    if msg["type"] == "done":
      assert _recv(ws)["close"] == 1000
      return messages, np.concatenate(blocks)


def test_interrupt_message_drops_queued_audio_and_keeps_the_session(engine, pipe):
  """Over the WebSocket: interrupts before any audio answer at sample 0; 6 s of speech sent at once, then
  interrupt, interrupt again, then silence: the answer says where the session's audio now ends and how much was
  dropped (over a second: the engine cannot have used 6 s by then), the session stays open, and its frames are
  those of the audio kept followed by the silence; interrupt after end is refused by name."""
  client = _client(engine, pipe)
  ws, ready = _open(client, seed=6)
  interrupt = json.dumps({"type": "interrupt"})
  speech, silence = _speech(6.0, seed=6), np.zeros(int(0.5 * SR), np.int16)
  ws.send_text(interrupt)
  ws.send_text(interrupt)
  ws.send_bytes(speech.tobytes())
  ws.send_text(interrupt)
  ws.send_text(interrupt)
  ws.send_bytes(silence.tobytes())
  ws.send_text(json.dumps({"type": "end"}))
  messages, frames = _session_messages(ws, ready["width"])
  ws.__exit__(None, None, None)
  answers = [m for m in messages if m["type"] == "interrupted"]
  assert [(m["sample"], m["dropped_seconds"]) for m in answers[:2]] == [(0, 0.0), (0, 0.0)]
  kept = answers[2]["sample"]
  assert answers[3]["sample"] == kept and answers[3]["dropped_seconds"] == 0.0
  assert answers[2]["dropped_seconds"] == pytest.approx((speech.size - kept) / SR, abs=1e-4) and kept < 5 * SR
  done = messages[-1]["frames"]
  assert done == frames.shape[0] == audio_lib.num_video_frames(kept + silence.size)
  want = _alone(pipe, 6, np.concatenate([speech[:kept], silence]))
  assert frames.shape == want.shape and np.abs(frames.astype(int) - want).max() <= 1

  ws, _ = _open(client, seed=7)
  ws.send_bytes(_speech(0.3).tobytes())
  ws.send_text(json.dumps({"type": "end"}))
  ws.send_text(interrupt)
  while (msg := _recv(ws)).get("type") not in ("error", "done"):
    pass
  assert msg["type"] == "error" and "interrupt after end" in msg["message"] and _recv(ws)["close"] == 1008
  ws.__exit__(None, None, None)
