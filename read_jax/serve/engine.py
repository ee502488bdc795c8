"""Many live sessions on one or more devices: the units of work that are ready run together in one batched call.

  engine = Engine(pipe, batch_sizes=(1, 2, 4), max_sessions=4)
  engine.start()                         # compiles every batch size on every device, measures the unit time
  sid = engine.open(portrait, seed=0, on_block=..., on_done=..., on_error=...)
  engine.feed(sid, pcm16)                # any thread; never blocks on the device
  engine.interrupt(sid)                  # drop the audio not yet used: the avatar stops talking within a block
  engine.end(sid)                        # or engine.cancel(sid)
  engine.stop(cancel=True)

Each session is a :class:`read_jax.live.LiveSession` of the engine's ``mode`` (its own portrait latent, speech
state, sampler state, key). One worker thread per device (a *lane*) owns its sessions: it feeds them the audio
that came in, asks each for its next unit of work (``next_work()``: a clip, or one advance of the rolling window)
and runs the units that are ready — all with the same sampler — as one batched call of the session class
(``denoise_batch``, padded to the next compiled batch size), then decodes them in one batched VAE call
(``decode_batch``), each with its own key. A session's frames are those it gets alone (the batch axis only
stacks independent sessions). Callbacks run on the lane's thread; they must only hand the block on.

Admission: ``start`` times one batched unit at every compiled size B on the device, and one unit's speech (its
Whisper windows and SpeechAE latents, which each session computes on its own); a session produces one unit
per ``unit_seconds`` of speech (a clip: 8(f − 1)/fps; a rolling advance: 8/fps), so n sessions on a lane stay
real-time while the measured time of the batches that hold them plus n units' speech is at most
``realtime_margin`` of that. ``open
refuses a session that would break this for every lane (:class:`AdmissionError`, with the numbers), and when
``max_sessions`` are open.

Backpressure: a session opened with ``max_pending`` gets no new unit while that many of its blocks are handed
out and not yet acknowledged with :meth:`Engine.delivered` (a client that stops reading pauses its own
generation; its audio is still taken in, bounded by the caller's own limit on audio).

Supervision: an exception that escapes the per-session guards of a lane's loop (a bug, a callback that
raises) fails that lane's sessions and restarts the loop in place; a lane that faults more than
``max_lane_restarts`` times in ``LANE_RESTART_WINDOW`` seconds, or whose thread dies, is dead: it takes no
session, and :meth:`Engine.stats` says so (``lanes_dead``) for readiness and liveness probes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable

import jax
import numpy as np

from read_jax.audio import SAMPLE_RATE
from read_jax.errors import InputError
from read_jax.live import SESSIONS, FrameBlock, LiveSession
from read_jax.constants import FRAMES_PER_LATENT
from read_jax.pipeline import ReadPipeline


LANE_RESTART_WINDOW = 60.0  # seconds: a lane faulting more than max_lane_restarts times in this is dead
log = logging.getLogger(__name__)


class AdmissionError(Exception):
  """The engine cannot take another session now (full, or it would not stay real-time); the message says why."""


@dataclasses.dataclass
class _Session:
  sid: int
  live: LiveSession
  on_block: Callable[[FrameBlock], None]
  on_done: Callable[[int], None]
  on_error: Callable[[BaseException], None]
  on_interrupt: Callable[[int, int], None]
  inbox: list = dataclasses.field(default_factory=list)  # PCM arrays not yet fed
  interrupts: int = 0  # interrupt() calls the worker has not yet applied
  dropped: int = 0  # samples of the inbox those calls dropped
  ending: bool = False  # end() was called
  ended: bool = False  # the worker has ended the LiveSession's stream
  max_pending: int | None = None  # no new clip while this many blocks are unacknowledged (None: no bound)
  pending: int = 0  # blocks handed to on_block and not yet delivered()

  @property
  def paused(self) -> bool:
    return self.max_pending is not None and self.pending >= self.max_pending


class _Lane:
  """One device: its pipeline copy, its sessions, its worker thread."""

  def __init__(self, engine: Engine, pipe: ReadPipeline, device):
    self.engine = engine
    self.pipe = pipe
    self.device = device
    self.sessions: dict[int, _Session] = {}
    self.unit_seconds: dict[int, float] = {}  # batch size → measured seconds of one batched unit + decode
    self.speech_seconds = 0.0  # measured seconds of one session's speech for one unit (not batched)
    self.thread: threading.Thread | None = None
    self.batches = 0
    self.units = 0
    self.busy = 0.0  # seconds spent running batches (denoise + decode)
    self.speech_busy = 0.0  # seconds spent on the sessions' audio (Whisper windows, SpeechAE latents)
    self.faults: list[float] = []  # times of the loop's faults (restarts) in the last LANE_RESTART_WINDOW
    self.restarts = 0  # faults survived by restarting the loop
    self.dead = False  # past its restart budget, or its thread died: takes no session
    self.last_error = ""  # the last fault, for logs and stats

  @property
  def alive(self) -> bool:
    return not self.dead and self.thread is not None and self.thread.is_alive()

  def context(self):
    """Where this lane's computations run. The default device is part of jit's cache key, so the start-up
    compilation, ``open`` and the worker all run under the same context (none with a single device)."""
    return jax.default_device(self.device) if len(self.engine.lanes) > 1 else contextlib.nullcontext()

  def batch_seconds(self, n: int) -> float:
    """Seconds per round of units for n sessions: their speech, and the batches of the compiled sizes that hold
    them (largest first)."""
    sizes = self.engine.batch_sizes
    total = n * self.speech_seconds
    while n > 0:
      size = next((b for b in sizes if b >= n), sizes[-1])
      total += self.unit_seconds[size]
      n -= size
    return total


class Engine:
  """Live sessions batched per device (module docstring).

  ``batch_sizes``: the compiled batch sizes (a round of k ready units runs in ceil-steps of the largest, the
  rest padded to the next size up). ``mode``: the sessions' live mode (:data:`read_jax.live.SESSIONS`; the
  checkpoint's ``live_mode`` when None).
  ``steps``/``cfg``/``alpha``/``beta``/``solver``: one sampler for every session (the checkpoint's where None).
  ``devices``: the devices to spread sessions over (default: all local devices of the default backend).
  ``realtime_margin``: admit a session only while the lane's measured batch time stays under this fraction of a
  unit's speech (None: no admission by time). ``max_lane_restarts``: faults a lane survives in
  ``LANE_RESTART_WINDOW`` seconds before it is dead (module docstring).
  """

  def __init__(self, pipe: ReadPipeline, *, batch_sizes=(1, 2, 4), max_sessions: int = 4, mode: str | None = None,
               steps: int | None = None, cfg: str | None = None, alpha: float | None = None,
               beta: float | None = None, solver: str | None = None, policy=None, devices=None,
               realtime_margin: float | None = 0.9, max_lane_restarts: int = 3):
    sizes = tuple(sorted({int(b) for b in batch_sizes}))
    if not sizes or sizes[0] < 1:
      raise InputError(f"batch_sizes: need positive integers, got {batch_sizes!r}")
    if max_sessions < 1:
      raise InputError(f"max_sessions: need at least 1, got {max_sessions}")
    self.pipe = pipe
    self.batch_sizes = sizes
    self.max_sessions = max_sessions
    mode = pipe.config.live_mode if mode is None else mode
    if mode not in SESSIONS:
      raise InputError(f"mode: must be one of {tuple(SESSIONS)}, got {mode!r}")
    self.mode = mode
    self.settings = dict(steps=steps, cfg=cfg, alpha=alpha, beta=beta, solver=solver, policy=policy, mode=mode)
    self.steps = pipe.sampler(steps=steps, cfg=cfg, solver=solver).steps
    self.realtime_margin = realtime_margin
    self.max_lane_restarts = max_lane_restarts
    f = pipe.config.clip_frames
    latents = f - 1 if mode == "clip" else 1  # new latent frames per unit: a clip's, or one advance's
    self.unit_duration = FRAMES_PER_LATENT * latents / pipe.config.fps  # seconds of speech per unit
    self.first_block_samples: int | None = None  # audio that makes a new session's first block ready (at start)
    devices = list(devices) if devices is not None else jax.local_devices()
    self.lanes = [_Lane(self, pipe.on_device(d) if len(devices) > 1 else pipe, d) for d in devices]
    self._cond = threading.Condition()
    self._ids = itertools.count(1)
    self._where: dict[int, _Lane] = {}
    self._running = False
    self._stopping = False
    self.opened = 0
    self.refused = 0

  # ------------------------------------------------------------------------------------------
  # Life cycle

  def start(self) -> Engine:
    """Compile every batch size on every lane (one warm-up round each, timed for admission) and start the
    workers. Nothing compiles after this as sessions come and go."""
    for lane in self.lanes:
      with lane.context():
        self._warm_up(lane)
    with self._cond:
      self._running, self._stopping = True, False
    for lane in self.lanes:
      lane.thread = threading.Thread(target=self._supervise, args=(lane,), name=f"read-engine-{lane.device}",
                                     daemon=True)
      lane.thread.start()
    return self

  def _warm_up(self, lane: _Lane) -> None:
    """A session of silence through every program a lane runs, each batch size timed on a unit that decodes."""
    warm = LiveSession(lane.pipe, np.zeros((64, 64, 3), np.uint8), seed=0, **self.settings)
    self.first_block_samples = _samples_for_unit(warm)
    cls, job, fed = type(warm), None, 0
    # Run units until one decodes as every later one does: the rolling window's ramp-up frees no frame, and a
    # decode stream's first step (a session's first clip) is not the batched program.
    while job is None or (job.stream is not None and job.stream.cache is None):
      if (work := warm.next_work()) is None:
        more = _samples_for_unit(warm)
        assert fed < 8 * more, "the warm-up's silence must make units ready"
        warm.feed(np.zeros(more, np.float32))  # speech features + latents compiled
        fed += more
        continue
      out = cls.denoise_batch(lane.pipe, warm.sampler, warm.params, [work], size=1)[0]
      job = warm.take_denoised(work, out)
      warm.complete(work, None if job is None else cls.decode_batch(lane.pipe, [job], size=1)[0])
    for size in self.batch_sizes:
      for _ in range(2):  # the first call compiles, the second is the time admission uses (the same work again)
        t0 = time.perf_counter()
        out = cls.denoise_batch(lane.pipe, warm.sampler, warm.params, [work] * size, size=size)
        jax.block_until_ready(out)
        cls.decode_batch(lane.pipe, [job] * size, size=size)
        lane.unit_seconds[size] = time.perf_counter() - t0
    # One unit's speech, as the loop computes it (next_work turns the audio it needs into features and latents).
    unit_samples = round(self.unit_duration * SAMPLE_RATE)
    for _ in range(2):  # compiled already; the second is the time admission uses
      warm.feed(np.zeros(unit_samples, np.float32))
      t0 = time.perf_counter()
      work = warm.next_work()
      lane.speech_seconds = time.perf_counter() - t0
      if work is not None:
        self._run_batch(lane, [(warm, work)])
    warm.end()  # the end's padding and trim
    while (work := warm.next_work()) is not None:
      self._run_batch(lane, [(warm, work)])

  def stop(self, cancel: bool = True) -> None:
    """Stop the workers; ``cancel``: drop open sessions (no more callbacks), else finish them first."""
    with self._cond:
      if not self._running:
        return
      if cancel:
        for lane in self.lanes:
          lane.sessions.clear()
        self._where.clear()
      else:
        for lane in self.lanes:
          for s in lane.sessions.values():
            s.ending = True
      self._stopping = True
      self._cond.notify_all()
    for lane in self.lanes:
      lane.thread.join()
    with self._cond:
      self._running = False

  # ------------------------------------------------------------------------------------------
  # Sessions (any thread)

  def open(self, portrait, *, seed: int = 0, steps: int | None = None, on_block=None, on_done=None,
           on_error=None, on_interrupt=None, max_pending: int | None = None) -> int:
    """A new session on the least loaded lane that keeps real time; its id. Raises AdmissionError (refused)
    or InputError (the portrait). Encoding the portrait runs in the caller's thread. ``max_pending``: the
    session's generation pauses while this many of its blocks await :meth:`delivered` (None: never).
    ``on_interrupt(samples, dropped)``: once per :meth:`interrupt`, when the lane has applied it."""
    if steps is not None and steps != self.steps:
      raise InputError(f"steps: this server samples {self.steps} steps (scripts/serve.py --steps), got {steps}")
    lane = self._admit()
    with lane.context():
      live = LiveSession(lane.pipe, portrait, seed=seed, **self.settings)
    noop = lambda *a: None  # noqa: E731
    with self._cond:
      if len(self._where) >= self.max_sessions:  # another open won the race
        self.refused += 1
        raise AdmissionError(f"{self.max_sessions} sessions already open (max_sessions)")
      if lane.dead:  # the lane died while the portrait was encoded
        raise AdmissionError(f"the lane on {lane.device} stopped ({lane.last_error})")
      self._check_fits(lane)  # sessions opened meanwhile (concurrent opens all pass _admit first)
      sid = next(self._ids)
      lane.sessions[sid] = _Session(sid, live, on_block or noop, on_done or noop, on_error or noop,
                                    on_interrupt or noop, max_pending=max_pending)
      self._where[sid] = lane
      self.opened += 1
    return sid

  def feed(self, sid: int, pcm) -> None:
    """Queue 16 kHz mono PCM (int16 or float32) for session ``sid``; the lane's worker feeds it."""
    with self._cond:
      s = self._find(sid)
      if s is not None:
        s.inbox.append(np.array(pcm, copy=True))
        self._cond.notify_all()

  def interrupt(self, sid: int) -> None:
    """Drop the audio of ``sid`` not yet used (queued here, and fed to its session ahead of the unit being made:
    :meth:`read_jax.live.LiveSession.interrupt`); the session goes on with the audio fed after. The lane applies
    it before that audio and calls ``on_interrupt(samples, dropped)``: the session's audio now ends at sample
    ``samples`` (where the audio fed after begins), and ``dropped`` samples were dropped (0 for a call the lane
    applied together with an earlier one)."""
    with self._cond:
      s = self._find(sid)
      if s is not None:
        s.dropped += sum(pcm.shape[0] for pcm in s.inbox)
        s.inbox = []
        s.interrupts += 1
        self._cond.notify_all()

  def end(self, sid: int) -> None:
    """The audio of ``sid`` is complete: its last units run, then ``on_done(frames)``."""
    with self._cond:
      s = self._find(sid)
      if s is not None:
        s.ending = True
        self._cond.notify_all()

  def delivered(self, sid: int) -> None:
    """One block of ``sid`` has reached its client: a session paused by ``max_pending`` may run again."""
    with self._cond:
      s = self._find(sid)
      if s is not None and s.pending > 0:
        s.pending -= 1
        self._cond.notify_all()

  def cancel(self, sid: int) -> None:
    """Drop ``sid`` now (no more callbacks); unknown or finished ids are ignored."""
    with self._cond:
      lane = self._where.pop(sid, None)
      if lane is not None:
        lane.sessions.pop(sid, None)

  def stats(self) -> dict:
    """Numbers for /healthz and /metrics."""
    with self._cond:
      out = {"running": self._running and not self._stopping, "sessions": len(self._where),
             "max_sessions": self.max_sessions, "devices": len(self.lanes), "opened_total": self.opened,
             "refused_total": self.refused, "unit_duration_seconds": self.unit_duration,
             "queued_audio_chunks": sum(len(s.inbox) for lane in self.lanes for s in lane.sessions.values()),
             "batches_total": sum(lane.batches for lane in self.lanes),
             "units_total": sum(lane.units for lane in self.lanes),
             "busy_seconds_total": sum(lane.busy for lane in self.lanes),
             "speech_seconds_total": sum(lane.speech_busy for lane in self.lanes),
             "pending_blocks": sum(s.pending for lane in self.lanes for s in lane.sessions.values()),
             "paused_sessions": sum(s.paused for lane in self.lanes for s in lane.sessions.values()),
             "lanes_alive": sum(lane.alive for lane in self.lanes),
             "lanes_dead": sum(lane.dead for lane in self.lanes),
             "lane_restarts_total": sum(lane.restarts for lane in self.lanes),
             "speech_unit_seconds": max((lane.speech_seconds for lane in self.lanes), default=0.0)}
      for size in self.batch_sizes:
        measured = [lane.unit_seconds[size] for lane in self.lanes if size in lane.unit_seconds]
        if measured:
          out[f"batch{size}_unit_seconds"] = max(measured)
      return out

  def capacity(self) -> int:
    """Sessions the engine admits in all by the measured unit times (≤ max_sessions)."""
    n = 0
    for lane in (ln for ln in self.lanes if not ln.dead):
      k = 0
      while k < self.max_sessions and self._fits(lane, k + 1):
        k += 1
      n += k
    return min(n, self.max_sessions)

  # ------------------------------------------------------------------------------------------
  # Inside

  def _find(self, sid):
    lane = self._where.get(sid)
    return None if lane is None else lane.sessions.get(sid)

  def _fits(self, lane: _Lane, n: int) -> bool:
    if self.realtime_margin is None or not lane.unit_seconds:
      return True
    return lane.batch_seconds(n) <= self.realtime_margin * self.unit_duration

  def _admit(self) -> _Lane:
    with self._cond:
      if not self._running or self._stopping:
        raise AdmissionError("the engine is not running")
      if len(self._where) >= self.max_sessions:
        self.refused += 1
        raise AdmissionError(f"{self.max_sessions} sessions already open (max_sessions)")
      lanes = [ln for ln in self.lanes if not ln.dead]
      if not lanes:
        raise AdmissionError("no device lane is running (every lane stopped on faults)")
      lane = min(lanes, key=lambda ln: len(ln.sessions))
      self._check_fits(lane)
      return lane

  def _check_fits(self, lane: _Lane) -> None:
    """AdmissionError (counted) when one more session would break the lane's real time (under ``_cond``)."""
    n = len(lane.sessions) + 1
    if not self._fits(lane, n):
      self.refused += 1
      need = lane.batch_seconds(n)
      raise AdmissionError(
        f"{n} sessions on {lane.device} would need {need:.3f} s of compute per {self.unit_duration:.2f} s "
        f"of speech (measured at start-up, real-time margin {self.realtime_margin:g}): {len(self._where)} "
        "sessions is this server's real-time capacity")

  def _supervise(self, lane: _Lane) -> None:
    """The lane's thread: its loop, restarted in place after a fault until the lane is out of restarts."""
    while True:
      try:
        self._worker(lane)
        return  # stopped
      except BaseException as e:  # a bug past the per-session guards: the lane's sessions, not the process
        now = time.monotonic()
        with self._cond:
          lane.faults = [t for t in lane.faults if now - t < LANE_RESTART_WINDOW] + [now]
          lane.last_error = f"{type(e).__name__}: {e}"
          lane.dead = len(lane.faults) > self.max_lane_restarts or not isinstance(e, Exception)
          lane.restarts += not lane.dead
          failed = list(lane.sessions.values())
          lane.sessions.clear()
          for s in failed:
            self._where.pop(s.sid, None)
        log.error("engine lane %s: %s (%s)", lane.device, lane.last_error, "dead" if lane.dead else "restarted",
                  exc_info=(type(e), e, e.__traceback__))
        for s in failed:
          try:
            s.on_error(e)
          except Exception:  # the session is gone either way
            log.exception("engine lane %s: on_error of session %s", lane.device, s.sid)
        if lane.dead:
          return

  def _worker(self, lane: _Lane) -> None:
    def paused(s: _Session) -> bool:  # a stopping engine finishes its sessions whether their clients read or not
      return s.paused and not self._stopping

    def has_work(s: _Session) -> bool:
      return (bool(s.inbox) or s.interrupts > 0 or (s.ending and not s.ended)
              or (s.live.work_ready and not paused(s)))

    with lane.context():
      while True:
        with self._cond:
          while not self._stopping and not any(has_work(s) for s in lane.sessions.values()):
            self._cond.wait()
          if self._stopping and not any(s.ending for s in lane.sessions.values()):
            return
          work = [(s, s.inbox, s.ending and not s.ended, paused(s), (s.interrupts, s.dropped))
                  for s in lane.sessions.values()]
          for s, _, ending, _, _ in work:
            s.inbox, s.interrupts, s.dropped = [], 0, 0
            s.ended = s.ended or ending
        ready = []
        t0 = time.perf_counter()
        for s, chunks, ending, hold, (interrupts, dropped) in work:
          try:
            if interrupts:  # before the audio that came after it
              dropped += s.live.interrupt()
              for i in range(interrupts):
                s.on_interrupt(s.live.num_samples, dropped if i == 0 else 0)
            for pcm in chunks:
              s.live.feed(pcm)
            if ending:
              s.live.end()
            unit = None if hold else s.live.next_work()
          except Exception as e:  # this session's audio (AudioError) or a bug: this session only
            self._fail(lane, s, e)
            continue
          if unit is not None:
            ready.append((s, unit))
        lane.speech_busy += time.perf_counter() - t0
        if ready:
          self._run_round(lane, ready)
        self._finish_done(lane)

  def _run_round(self, lane: _Lane, ready) -> None:
    """The ready units, grouped by what compiles them together (session class, static settings), in batches of at
    most the largest compiled size."""
    groups: dict = {}
    for s, unit in ready:
      groups.setdefault((type(s.live), unit.static), []).append((s, unit))
    largest = self.batch_sizes[-1]
    for items in groups.values():
      for lo in range(0, len(items), largest):
        chunk = items[lo:lo + largest]
        try:
          blocks = self._run_batch(lane, [(s.live, unit) for s, unit in chunk])
        except Exception as e:  # a device fault: the sessions of this batch only
          for s, _ in chunk:
            self._fail(lane, s, e)
          continue
        for (s, _), block in zip(chunk, blocks):
          with self._cond:
            if s.sid not in lane.sessions:  # cancelled meanwhile
              continue
            if block is not None:
              s.pending += 1
          if block is not None:
            s.on_block(block)

  def _run_batch(self, lane: _Lane, items) -> list:
    """Run [(LiveSession, Work)] (one class, one static setting) as one padded batch: the sampler, then the
    decode of the units that free frames; each session takes its result. A FrameBlock or None per item."""
    t0 = time.perf_counter()
    live0 = items[0][0]
    cls = type(live0)
    sizes = self.batch_sizes
    size = lambda n: next(b for b in sizes if b >= n)  # noqa: E731
    outs = cls.denoise_batch(lane.pipe, live0.sampler, live0.params, [w for _, w in items], size=size(len(items)))
    jobs = [live.take_denoised(w, out) for (live, w), out in zip(items, outs)]
    todo = [i for i, job in enumerate(jobs) if job is not None]
    frames = [None] * len(items)
    if todo:
      decoded = cls.decode_batch(lane.pipe, [jobs[i] for i in todo], size=size(len(todo)))
      for i, f in zip(todo, decoded):
        frames[i] = f
    blocks = [live.complete(w, f) for (live, w), f in zip(items, frames)]
    lane.batches += 1
    lane.units += len(items)
    lane.busy += time.perf_counter() - t0
    return blocks

  def _finish_done(self, lane: _Lane) -> None:
    with self._cond:
      done = [s for s in lane.sessions.values() if s.live.done]
      for s in done:
        lane.sessions.pop(s.sid, None)
        self._where.pop(s.sid, None)
    for s in done:
      s.on_done(s.live.frames_out)

  def _fail(self, lane: _Lane, s: _Session, exc: BaseException) -> None:
    with self._cond:
      lane.sessions.pop(s.sid, None)
      self._where.pop(s.sid, None)
    s.on_error(exc)


def _samples_for_unit(session: LiveSession) -> int:
  """Samples of audio that make a session's first unit that frees frames ready: its frames (a clip's; the
  rolling window's latent frame, plus the W − 1 advances of its ramp-up) plus the speech window's look-ahead."""
  latents = session.clip_frames - 1 if session.mode == "clip" else session.noisy - 1
  seconds = (1 + FRAMES_PER_LATENT * latents) / session.fps + session.policy.lookahead_ms / 1000 + 0.1
  return int(math.ceil(seconds * SAMPLE_RATE))


__all__ = ["AdmissionError", "Engine"]
