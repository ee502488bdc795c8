"""read_jax.files: every way a checkpoint file can be wrong is one CheckpointError naming it; writes are atomic."""

import errno
import os
import stat

import numpy as np
import pytest

from read_jax import files
from read_jax.errors import CheckpointError


@pytest.fixture
def good(tmp_path):
  path = str(tmp_path / "w.safetensors")
  files.write_safetensors(path, {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.array(2.5, np.float32)})
  return path


def test_round_trip_keeps_shapes(good):
  got = files.read_safetensors(good)
  np.testing.assert_array_equal(got["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
  assert got["s"].shape == ()  # 0-d stays 0-d


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_file_is_named(good, damage):
  data = open(good, "rb").read()
  with open(good, "wb") as fh:
    fh.write({"truncate": data[:len(data) // 2], "garbage": os.urandom(len(data)), "empty": b""}[damage])
  with pytest.raises(CheckpointError, match=f"^{good}: not a readable safetensors file"):
    files.read_safetensors(good)


def test_non_finite_tensor_is_named(tmp_path):
  path = str(tmp_path / "bad.safetensors")
  w = np.ones((4, 5), np.float32)
  w[2, 3] = np.nan
  w[0, 0] = np.inf
  files.write_safetensors(path, {"ok": np.ones(3, np.float32), "blocks/0/w": w})
  with pytest.raises(CheckpointError, match=r"bad.safetensors: tensor blocks/0/w holds 2 NaN/inf value\(s\) of 20"):
    files.read_safetensors(path)
  assert np.isnan(files.read_safetensors(path, check_finite=False)["blocks/0/w"]).sum() == 1


def test_bad_json_is_named(tmp_path):
  (tmp_path / "c.json").write_text("{not json")
  with pytest.raises(CheckpointError, match="c.json: not valid JSON"):
    files.read_json(str(tmp_path / "c.json"))
  (tmp_path / "l.json").write_text("[1, 2]")
  with pytest.raises(CheckpointError, match="l.json: expected a JSON object, got list"):
    files.read_json(str(tmp_path / "l.json"))
  with pytest.raises(CheckpointError, match="missing.json: no such file"):
    files.read_json(str(tmp_path / "missing.json"))


def test_written_files_get_the_users_mode(tmp_path):
  old = os.umask(0o027)
  try:
    files.write_safetensors(str(tmp_path / "a.safetensors"), {"x": np.zeros(2, np.float32)})
    files.write_json(str(tmp_path / "a.json"), {"k": 1})
  finally:
    os.umask(old)
  for name in ("a.safetensors", "a.json"):
    assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o640, name  # 0o666 & ~0o027


def test_a_failed_write_leaves_the_old_file_and_no_temp(good, monkeypatch):
  before = open(good, "rb").read()

  def disk_full(tensors, filename, metadata=None):
    with open(filename, "wb") as fh:
      fh.write(b"partial")
    raise OSError(errno.ENOSPC, "No space left on device", filename)

  monkeypatch.setattr(files, "save_file", disk_full)
  with pytest.raises(OSError, match="No space left"):
    files.write_safetensors(good, {"a": np.zeros(3, np.float32)})
  assert open(good, "rb").read() == before
  assert os.listdir(os.path.dirname(good)) == [os.path.basename(good)]


def test_an_interrupted_write_leaves_no_temp(tmp_path):
  target = tmp_path / "x.json"
  with pytest.raises(KeyboardInterrupt):
    with files.atomic_path(str(target)) as tmp:
      open(tmp, "w").write("half")
      raise KeyboardInterrupt
  assert os.listdir(tmp_path) == []
