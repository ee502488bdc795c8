"""Timing and table helpers shared by the benchmarks."""

from __future__ import annotations

import time

import numpy as np


def time_fn(fn, *, warmup: int = 1, repeats: int = 5) -> dict:
  """Median/min wall seconds of ``fn()`` (which must block until its result is ready)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return {"median": float(np.median(times)), "min": float(np.min(times))}


def print_table(rows: list[dict], columns: list[str]) -> None:
  widths = [max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in columns]
  print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
  for r in rows:
    print("  ".join(fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def fmt(v) -> str:
  """A table cell: floats to 4 significant digits, None empty."""
  if isinstance(v, float):
    return f"{v:.4g}"
  return "" if v is None else str(v)
