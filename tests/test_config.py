import os

import ml_collections
import pytest

from read_jax import config as config_lib


def _write(tmp_path, text):
  path = tmp_path / "exp.py"
  path.write_text(text)
  return str(path)


CONFIG = """
import ml_collections
from read_jax.config import parse_arg

def get_config(arg=None):
  arg = parse_arg(arg, tiny=False, width=8)
  c = ml_collections.ConfigDict()
  c.train = ml_collections.ConfigDict(dict(lr=1e-4, steps=100 if not arg.tiny else 3, name="x", flag=False))
  c.width = arg.width
  c.shape = (1, 2)
  return c
"""


def test_path_arg_and_overrides(tmp_path):
  path = _write(tmp_path, CONFIG)
  c = config_lib.load_config(f"{path}:tiny,width=5", ["--config.train.lr=3e-5", "config.train.flag=true",
                                                     "--config.shape=(3, 4, 5)"])
  assert c.train.steps == 3 and c.width == 5
  assert c.train.lr == pytest.approx(3e-5) and isinstance(c.train.lr, float)
  assert c.train.flag is True and c.shape == (3, 4, 5)
  with pytest.raises(AttributeError):
    c.train.new_key = 1  # locked


def test_unknown_keys_are_errors(tmp_path):
  path = _write(tmp_path, CONFIG)
  with pytest.raises(KeyError, match="lrr"):
    config_lib.load_config(path, ["--config.train.lrr=1"])
  with pytest.raises(ValueError, match="bogus"):
    config_lib.load_config(f"{path}:bogus")
  with pytest.raises(FileNotFoundError, match="nope"):
    config_lib.load_config("nope.py")


def test_bare_names_resolve_in_configs_dir():
  names = [f for f in os.listdir(config_lib.CONFIG_DIR) if f.endswith(".py") and not f.startswith("_")
           and f != "common.py"]
  if not names:
    pytest.skip("no experiment configs yet")
  c = config_lib.load_config(names[0] + ":tiny" if True else names[0])
  assert isinstance(c, ml_collections.ConfigDict)
