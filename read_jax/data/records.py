"""ArrayRecord shards of examples and the grain pipelines that read them.

An example is a flat ``dict[str, np.ndarray]``, serialised with ``np.savez`` into bytes (loaded
back with ``allow_pickle=False``: no pickle anywhere). One ArrayRecord record = one example.

Pipelines are grain ``MapDataset``s: random access, so an iterator's state is one integer (the
next index) that orbax saves with every checkpoint, and resume continues exactly where it stopped
without replaying the loader. Order of operations (each is deterministic from the seed):
  shard by process → shuffle (a new permutation per epoch) → repeat → per-example random transform
  (seeded by the example's global index) → batch (per-process rows) → thread-prefetching iterator.
"""

from __future__ import annotations

import glob
import io
import os
import threading
from typing import Callable, Iterable, Sequence

import grain
import numpy as np
from array_record.python import array_record_module

from read_jax.errors import DataError

Example = dict[str, np.ndarray]


def encode_example(example: Example) -> bytes:
  arrays = {k: np.asarray(v) for k, v in example.items()}
  for k, v in arrays.items():
    if v.dtype.hasobject:  # np.savez would pickle these
      raise ValueError(f"example key {k!r}: dtype {v.dtype} holds Python objects; only numeric arrays are stored")
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  return buf.getvalue()


# np.load parses each array's header with ast.literal_eval, which CPython 3.11 cannot run in several
# threads at once ("SystemError: AST constructor recursion depth mismatch"); grain reads with threads.
_DECODE_LOCK = threading.Lock()


def decode_example(record: bytes) -> Example:
  with _DECODE_LOCK, np.load(io.BytesIO(record), allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


class ShardWriter:
  """Writes examples to ``{prefix}-{i:05d}.array_record``, a new shard every ``examples_per_shard``."""

  def __init__(self, prefix: str, examples_per_shard: int = 1000):
    if examples_per_shard < 1:
      raise ValueError(f"examples_per_shard must be >= 1, got {examples_per_shard}")
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    self.prefix, self.examples_per_shard = prefix, examples_per_shard
    self.paths: list[str] = []
    self.count = 0
    self._writer = None
    self._in_shard = 0

  def write(self, example: Example) -> None:
    if self._writer is None or self._in_shard == self.examples_per_shard:
      self._close_shard()
      path = f"{self.prefix}-{len(self.paths):05d}.array_record"
      # group_size:1 → each record is its own chunk, so random access reads one example.
      self._writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
      self.paths.append(path)
    self._writer.write(encode_example(example))
    self._in_shard += 1
    self.count += 1

  def _close_shard(self):
    if self._writer is not None:
      self._writer.close()
    self._writer, self._in_shard = None, 0

  def close(self) -> list[str]:
    self._close_shard()
    return self.paths

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def write_shards(examples: Iterable[Example], prefix: str, examples_per_shard: int = 1000) -> list[str]:
  with ShardWriter(prefix, examples_per_shard) as w:
    for ex in examples:
      w.write(ex)
  return w.paths


def expand_paths(pattern: str | Sequence[str], what: str = "data", hint: str = "") -> list[str]:
  """Sorted files matching a glob (or a comma-separated list of globs).

  None matching is a :class:`~read_jax.errors.DataError` naming ``what`` (the option that holds the
  glob) and the glob, followed by ``hint`` (what writes such files).
  """
  patterns = pattern.split(",") if isinstance(pattern, str) else list(pattern)
  paths = sorted(p for pat in patterns for p in glob.glob(os.path.expanduser(pat.strip())))
  if not paths:
    raise DataError(f"{what}: no files match {pattern!r}" + (f"; {hint}" if hint else ""))
  return paths


def read_source(paths: Sequence[str]) -> grain.MapDataset:
  """Decoded examples of ArrayRecord shards, as a random-access ``MapDataset``."""
  return grain.MapDataset.source(grain.sources.ArrayRecordDataSource(list(paths))).map(decode_example)


def pipeline(source: grain.MapDataset, *, batch_size: int, seed: int, train: bool,
             transform: Callable[[Example, np.random.Generator], Example] | None = None,
             process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """Batched dataset of this process's rows of every global batch.

  ``batch_size`` is per process (the global batch divided by ``process_count``). The order is
  defined globally — shuffle, repeat, per-example transform, then global batch k = elements
  kB … kB + B − 1 — and process p reads only rows p·b … p·b + b − 1 of each (b = B / P). So the
  global batches, row for row, are the same whatever the number of processes: a run on 2 hosts sees
  exactly the data of a run on 1, and reads no example twice. Training: shuffled and repeated
  forever (batches may straddle epochs). Eval: one ordered pass, incomplete last batch dropped,
  transform seeded the same way every time so validation losses are comparable.
  """
  ds = source
  if train:
    ds = ds.shuffle(seed=seed).repeat()  # reseeds each epoch → a fresh permutation per epoch
  if transform is not None:
    ds = ds.random_map(transform, seed=seed)
  if process_count > 1:
    ds = _ProcessRows(ds, batch_size, process_index, process_count)
  if len(ds) < batch_size:
    raise DataError(f"process {process_index}/{process_count} has {len(ds)} examples, fewer than one batch "
                    f"of {batch_size} (dataset has {len(source)})")
  return ds.batch(batch_size, drop_remainder=True)


class _ProcessRows(grain.MapDataset):
  """Element i of process p = element (i // b)·b·P + p·b + i % b of the global order (b rows per process)."""

  def __init__(self, parent: grain.MapDataset, rows: int, process_index: int, process_count: int):
    super().__init__(parent)
    self._rows, self._p, self._n = rows, process_index, process_count
    self._len = len(parent) // (rows * process_count) * rows

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    b = self._rows
    return self._parent[(index // b) * b * self._n + self._p * b + index % b]

  def __str__(self) -> str:
    return f"_ProcessRows(rows={self._rows}, process={self._p}/{self._n})"


def make_iterator(ds: grain.MapDataset, workers: int, prefetch: int = 4) -> grain.DatasetIterator:
  """A checkpointable iterator (``get_state``/``set_state``) with ``workers`` reader threads."""
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=workers, prefetch_buffer_size=prefetch)))


def random_crop(key: str, num_frames: int) -> Callable[[Example, np.random.Generator], Example]:
  """Transform: a random window of ``num_frames`` frames along axis 0 of ``example[key]``, as float32.

  Deterministic given grain's per-example generator (seed × global index), so resume and reruns
  see the same crops.
  """
  def crop(example: Example, rng: np.random.Generator) -> Example:
    x = example[key]
    if x.shape[0] < num_frames:
      raise DataError(f"example {key!r} has {x.shape[0]} frames, fewer than num_frames={num_frames}; "
                      "drop short clips when writing the shards")
    start = int(rng.integers(0, x.shape[0] - num_frames + 1))
    return {key: np.asarray(x[start:start + num_frames], np.float32)}
  return crop
