"""ArrayRecord shards and the grain pipeline: round trip, process sharding, seeded order, exact resume."""

import numpy as np
import pytest

from read_jax.data import records
from read_jax.errors import DataError


def _write(tmp_path, n=11, frames=7, per_shard=4):
  exs = [{"speech": np.full((frames, 2, 3), i, np.float16), "id": np.array(i, np.int32)} for i in range(n)]
  paths = records.write_shards(exs, str(tmp_path / "d" / "train"), examples_per_shard=per_shard)
  return exs, paths


def test_round_trip_and_shard_rollover(tmp_path):
  exs, paths = _write(tmp_path)
  assert len(paths) == 3 and paths[0].endswith("train-00000.array_record")  # 4 + 4 + 3
  assert records.expand_paths(str(tmp_path / "d" / "train-*")) == paths
  src = records.read_source(paths)
  assert len(src) == 11
  for i in (0, 5, 10):
    got = src[i]
    assert got["speech"].dtype == np.float16 and got["speech"].shape == (7, 2, 3)
    np.testing.assert_array_equal(got["speech"], exs[i]["speech"])
    assert int(got["id"]) == i


def test_object_arrays_are_refused():
  with pytest.raises(ValueError, match="'x'.*Python objects"):
    records.encode_example({"x": np.array([{"a": 1}], dtype=object)})


def test_missing_files_name_the_pattern(tmp_path):
  with pytest.raises(DataError, match="config.data.train_glob.*nothing-"):
    records.expand_paths(str(tmp_path / "nothing-*"), "config.data.train_glob")


def _ids(batch):
  return [int(i) for i in batch["id"]]


def test_process_sharding_shuffle_and_epochs(tmp_path):
  _, paths = _write(tmp_path, n=12)
  src = records.read_source(paths)
  shares = [records.pipeline(src, batch_size=2, seed=3, train=False, process_index=p, process_count=3)
            for p in range(3)]
  seen = sorted(i for ds in shares for b in ds for i in _ids(b))
  assert seen == list(range(12))  # disjoint and complete

  ds = records.pipeline(src, batch_size=4, seed=3, train=True)
  epoch = lambda e: sorted(i for b in range(3) for i in _ids(ds[3 * e + b]))
  first = [i for b in range(3) for i in _ids(ds[b])]
  second = [i for b in range(3, 6) for i in _ids(ds[b])]
  assert epoch(0) == epoch(1) == list(range(12))  # each epoch visits every example once
  assert first != list(range(12)) and first != second  # shuffled, and differently per epoch
  again = records.pipeline(src, batch_size=4, seed=3, train=True)
  assert _ids(again[4]) == _ids(ds[4])  # deterministic from the seed
  other = records.pipeline(src, batch_size=4, seed=4, train=True)
  assert [_ids(other[b]) for b in range(3)] != [_ids(ds[b]) for b in range(3)]


def test_global_batches_do_not_depend_on_the_process_count(tmp_path):
  """Rows of global batch k, concatenated over processes, are the single-process batch k, row for row."""
  _, paths = _write(tmp_path, n=12)
  src = records.read_source(paths)
  single = records.pipeline(src, batch_size=6, seed=7, train=True)
  for count in (2, 3):
    shares = [records.pipeline(src, batch_size=6 // count, seed=7, train=True, process_index=p,
                               process_count=count) for p in range(count)]
    for k in range(5):  # across epoch boundaries too
      assert [i for ds in shares for i in _ids(ds[k])] == _ids(single[k])


def test_iterator_resumes_exactly_and_crops_are_seeded(tmp_path):
  _, paths = _write(tmp_path, n=9, frames=20)
  src = records.read_source(paths).map(lambda ex: {"speech": ex["speech"] * 0 + np.arange(20, dtype=np.float16)[:, None, None]})
  crop = records.random_crop("speech", 9)
  ds = records.pipeline(src, batch_size=2, seed=5, train=True, transform=crop)
  it = records.make_iterator(ds, workers=1)
  for _ in range(6):
    next(it)
  state = it.get_state()
  expected = [next(it)["speech"] for _ in range(5)]
  fresh = records.make_iterator(records.pipeline(src, batch_size=2, seed=5, train=True, transform=crop), workers=1)
  fresh.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(fresh)["speech"], want)
  assert expected[0].dtype == np.float32 and expected[0].shape == (2, 9, 2, 3)
  starts = {float(x[0, 0, 0]) for b in expected for x in b}  # value = source frame index
  assert len(starts) > 1 and all(0 <= s <= 11 for s in starts)  # crops start at different frames, in range


def test_short_clip_error_is_clear(tmp_path):
  _, paths = _write(tmp_path, n=2, frames=5)
  ds = records.pipeline(records.read_source(paths), batch_size=1, seed=0, train=False,
                        transform=records.random_crop("speech", 9))
  with pytest.raises(ValueError, match="5 frames, fewer than num_frames=9"):
    ds[0]
