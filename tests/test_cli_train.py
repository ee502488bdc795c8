"""scripts/train.py under bad input: each mistake is exit code 2 and one ``error:`` line that names the
option or file and the problem (no traceback), found before anything is built, and the workdir and the
data are left exactly as they were.

The cases run ``main`` in this process under :func:`read_jax.cli.run` (the script's own entry point, a
second each); one runs the script as a subprocess, for the real exit code and stderr.
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from read_jax import cli
from read_jax.config import load_config

sys.path.insert(0, os.path.dirname(__file__))
import _train_data  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "train.py")


def _load_script():
  spec = importlib.util.spec_from_file_location("train_script", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def snapshot(root) -> dict[str, tuple[bytes, int]]:
  """Bytes and mtime of every file under ``root`` (or of ``root`` itself when it is a file)."""
  root = str(root)
  paths = [root] if os.path.isfile(root) else [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
  out = {}
  for p in paths:
    with open(p, "rb") as fh:
      out[p] = (fh.read(), os.stat(p).st_mtime_ns)
  return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  """Valid speech shards for the tiny SpeechAE (so the cases that need data get past the data check)."""
  directory = tmp_path_factory.mktemp("speech")
  train_glob, val_glob = _train_data.write_speech_shards(str(directory), load_config("speechae.py:tiny"),
                                                         train_clips=8, val_clips=8)
  return directory, [f"--config.data.train_glob={train_glob}", f"--config.data.val_glob={val_glob}"]


@pytest.fixture
def previous_run(tmp_path):
  """A workdir that already holds a run's files: a failed command must not touch them."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text('{"stage": "speechae"}\n')
  (workdir / "metrics.jsonl").write_text('{"split": "train", "step": 1, "loss": 1.0}\n')
  return workdir


# (id, config, extra args; {workdir} and {file} filled in, "data" = add valid data globs, what the line says)
CASES = [
  ("no_speech_data", "speechae.py:tiny", [], False,
   [r"config\.data\.train_glob: no files match 'data/speech/train-\*\.array_record'",
    r"scripts/extract_speech\.py", r"--config\.data\.train_glob='DIR/train-\*\.array_record'"]),
  ("no_clip_data", "a2v_dit.py:tiny", [], False,
   [r"config\.data\.train_glob: no files match 'data/clips/train-\*\.array_record'", r"scripts/preprocess\.py"]),
  ("no_val_data", "speechae.py:tiny", ["--config.data.val_glob={tmp}/nothing/val-*"], True,
   [r"config\.data\.val_glob: no files match '.*/nothing/val-\*'", r"scripts/extract_speech\.py",
    r"--config\.data\.val_glob='DIR/val-\*\.array_record'"]),
  ("wrong_type", "speechae.py:tiny", ["--config.train.lr=fast"], True,
   [r"^--config\.train\.lr=fast: expected a float, got 'fast'$"]),
  ("unknown_key", "speechae.py:tiny", ["--config.train.no_such_key=1"], True,
   [r"^--config\.train\.no_such_key=1: no key 'no_such_key' in config\.train \(known: .*\blr\b.*\bsteps\b.*\)$"]),
  ("unknown_section", "a2v_dit.py:tiny", ["--config.trian.lr=1"], True,
   [r"^--config\.trian\.lr=1: no key 'trian' in config \(known: .*\btrain\b.*\)$"]),
  ("unknown_config", "nosuch.py", [], True,
   [r"^--config nosuch\.py: no such config file \(looked in \. and .*configs; known: .*speechae\.py.*\)$"]),
  ("unknown_config_arg", "speechae.py:small", [], True,
   [r"^--config speechae\.py:small: unknown config argument 'small' \(known: tiny\)$"]),
  ("workdir_is_a_file", "speechae.py:tiny", ["--workdir", "{file}"], True,
   [r"^--workdir .*/notes\.txt: exists and is not a directory$"]),
  ("init_checkpoint_missing", "speechae.py:tiny", ["--config.init_checkpoint=/does/not/exist"], True,
   [r"^config\.init_checkpoint=/does/not/exist: no such file or directory$"]),
]


@pytest.mark.parametrize("config, extra, with_data, says", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_changes_nothing(tmp_path, shards, previous_run, capsys, monkeypatch,
                                                         config, extra, with_data, says):
  monkeypatch.chdir(tmp_path)  # the configs' default data globs are relative: nothing matches here
  notes = tmp_path / "notes.txt"
  notes.write_text("not a workdir\n")
  args = [a.format(tmp=tmp_path, file=notes) for a in extra]
  if "--workdir" not in args:
    args += ["--workdir", str(previous_run)]
  argv = ["--config", config, *(shards[1] if with_data else []), *args]  # later overrides win
  before = {**snapshot(tmp_path), **snapshot(shards[0])}

  code = cli.run(_load_script().main, argv)

  err = capsys.readouterr().err
  lines = [line for line in err.splitlines() if line.strip()]
  assert code == cli.EXIT_USER_ERROR, err
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  message = lines[0][len("error: "):]
  for pattern in says:
    assert re.search(pattern, message), (pattern, message)
  assert {**snapshot(tmp_path), **snapshot(shards[0])} == before  # nothing written, nothing touched
  assert sorted(os.listdir(previous_run)) == ["config.json", "metrics.jsonl"]


def test_script_exits_2_with_one_error_line(tmp_path, previous_run):
  """The real process: exit code 2, one ``error:`` line on stderr, no traceback, the workdir untouched."""
  before = snapshot(tmp_path)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, SCRIPT, "--config", "speechae.py:tiny", "--workdir", str(previous_run)],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert "config.data.train_glob" in errors[0] and "scripts/extract_speech.py" in errors[0], errors[0]
  assert snapshot(tmp_path) == before
