import os
import re

import ml_collections
import pytest

from read_jax import config as config_lib
from read_jax.errors import ConfigError


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


BAD = [  # (spec, overrides, the whole one-line message, as a regex)
  ("{path}", ["--config.train.lrr=1"],
   r"--config\.train\.lrr=1: no key 'lrr' in config\.train \(known: flag, lr, name, steps\)"),
  ("{path}", ["--config.trian.lr=1"], r"--config\.trian\.lr=1: no key 'trian' in config \(known: shape, train, width\)"),
  ("{path}", ["--config.train.lr=fast"], r"--config\.train\.lr=fast: expected a float, got 'fast'"),
  ("{path}", ["--config.train.steps=1.5"], r"--config\.train\.steps=1\.5: expected an integer, got '1\.5'"),
  ("{path}", ["--config.train.flag=maybe"], r"--config\.train\.flag=maybe: expected a boolean \(true/false\), got 'maybe'"),
  ("{path}", ["--config.shape=3"], r"--config\.shape=3: expected a tuple, e\.g\. \(1, 2\), got '3'"),
  ("{path}", ["--config.train=1"], r"--config\.train=1: config\.train is a section; override its keys .*lr.*"),
  ("{path}", ["--config.width.x=1"], r"--config\.width\.x=1: config\.width is an integer \(8\), not a section with keys"),
  ("{path}", ["config.train.lr"], r"config\.train\.lr: an override looks like --config\.KEY=VALUE .*"),
  ("{path}:bogus", [], r"--config .*exp\.py:bogus: unknown config argument 'bogus' \(known: tiny, width\)"),
  ("{path}:width=wide", [], r"--config .*:width=wide: config argument 'width=wide': expected an integer, got 'wide'"),
  ("nope.py", [], r"--config nope\.py: no such config file \(looked in \. and .*configs; known: .*speechae\.py.*\)"),
]


@pytest.mark.parametrize("spec, overrides, message", BAD, ids=[f"{b[0][-6:]}{b[1]}" for b in BAD])
def test_mistakes_are_one_line_config_errors(tmp_path, spec, overrides, message):
  path = _write(tmp_path, CONFIG)
  with pytest.raises(ConfigError) as info:
    config_lib.load_config(spec.format(path=path), overrides)
  assert re.fullmatch(message, str(info.value)), str(info.value)
  assert "\n" not in str(info.value)


def test_a_file_without_get_config_is_an_error(tmp_path):
  path = _write(tmp_path, "x = 1\n")
  with pytest.raises(ConfigError, match="defines no get_config"):
    config_lib.load_config(path)


def test_bare_names_resolve_in_configs_dir():
  names = [f for f in os.listdir(config_lib.CONFIG_DIR) if f.endswith(".py") and not f.startswith("_")
           and f != "common.py"]
  if not names:
    pytest.skip("no experiment configs yet")
  c = config_lib.load_config(names[0] + ":tiny" if True else names[0])
  assert isinstance(c, ml_collections.ConfigDict)
