"""The numbers a client and an operator see, through ``prometheus_client``: one ``CollectorRegistry`` per app (no
module globals), counters as counters, histograms for latencies, and gauges read at scrape time from the
engine and the app's own state (so they cannot drift from what they count).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)  # seconds
VIDEO_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)  # seconds
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# engine.stats() keys that only grow (exported as counters); every other number is a gauge
ENGINE_COUNTERS = ("opened_total", "refused_total", "batches_total", "units_total", "busy_seconds_total",
                   "speech_seconds_total", "lane_restarts_total")


class ServeMetrics:
  """The app's registry. ``engine_stats`` and ``app_gauges`` are called at each scrape (``app_gauges`` returns
  {name: (help, value)} for the app's queues and in-flight work)."""

  def __init__(self, engine_stats: Callable[[], dict], app_gauges: Callable[[], dict]):
    self.registry = CollectorRegistry(auto_describe=True)
    r = self.registry
    self.sessions_active = Gauge("read_sessions_active", "Live WebSocket sessions now.", registry=r)
    self.sessions = Counter("read_sessions", "Live sessions admitted.", registry=r)
    self.sessions_closed = Counter("read_sessions_closed", "WebSocket connections closed, by close code.", ["code"],
                                   registry=r)
    self.blocks = Counter("read_blocks", "Frame blocks sent.", registry=r)
    self.frames = Counter("read_frames", "Video frames sent.", registry=r)
    self.interrupts = Counter("read_interrupts", "interrupt messages applied (queued audio dropped).", registry=r)
    self.block_latency = Histogram("read_block_latency_seconds", "From the arrival of the audio of a block's last "
                                   "frame to the block being sent.", buckets=LATENCY_BUCKETS, registry=r)
    self.first_frame = Histogram("read_first_frame_latency_seconds", "From a session's first audio to its first "
                                 "frame sent.", buckets=LATENCY_BUCKETS, registry=r)
    self.realtime_factor = Gauge("read_realtime_factor", "Last finished session: wall seconds from first audio to "
                                 "done over video seconds.", registry=r)
    self.refused = Counter("read_refused", "Requests and sessions refused before any work, by reason.", ["reason"],
                           registry=r)
    self.videos = Counter("read_videos", "POST /v1/videos answered, by outcome.", ["outcome"], registry=r)
    self.videos_in_flight = Gauge("read_videos_in_flight", "POST /v1/videos admitted and not yet answered.",
                                  registry=r)
    self.video_seconds = Histogram("read_video_seconds", "POST /v1/videos from admission to the answer.",
                                   buckets=VIDEO_BUCKETS, registry=r)
    self.errors = Counter("read_errors", "Server faults (close code 1011, HTTP 500), by where.", ["where"],
                          registry=r)
    ProcessCollector(registry=r)  # process_resident_memory_bytes, open fds, CPU seconds
    r.register(_Scraped(engine_stats, app_gauges))
    self._lock = threading.Lock()

  def render(self) -> bytes:
    return generate_latest(self.registry)


class _Scraped:
  """Gauges and engine counters read when /metrics is scraped."""

  def __init__(self, engine_stats, app_gauges):
    self.engine_stats = engine_stats
    self.app_gauges = app_gauges

  def describe(self):
    return []  # the names depend on the engine's compiled batch sizes

  def collect(self):
    threads = GaugeMetricFamily("read_threads", "Python threads in the server process.")
    threads.add_metric([], threading.active_count())
    yield threads
    for name, (help_text, value) in sorted(self.app_gauges().items()):
      family = GaugeMetricFamily(name, help_text)
      family.add_metric([], value)
      yield family
    stats = self.engine_stats()
    batch = GaugeMetricFamily("read_engine_batch_unit_seconds", "Measured seconds of one batched unit (a clip, or a "
                              "rolling advance) + decode at start-up, by compiled batch size.", labels=["batch"])
    for key, value in sorted(stats.items()):
      if isinstance(value, bool):
        value = int(value)
      if not isinstance(value, (int, float)):
        continue
      if key.startswith("batch") and key.endswith("_unit_seconds"):
        batch.add_metric([key[len("batch"):-len("_unit_seconds")]], value)
        continue
      name = "read_engine_" + key
      help_text = f"The engine's {key.replace('_', ' ')} (engine.stats())."
      family = CounterMetricFamily(name, help_text) if key in ENGINE_COUNTERS else GaugeMetricFamily(name, help_text)
      family.add_metric([], value)
      yield family
    yield batch


def parse(text: str) -> dict[str, float]:
  """An exposition → {sample name with its labels as written: value}, for tests and the load benchmark."""
  out = {}
  for line in text.splitlines():
    if line and not line.startswith("#"):
      name, _, value = line.rpartition(" ")
      out[name] = float(value)
  return out
