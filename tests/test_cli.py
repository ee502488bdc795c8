"""read_jax.cli: the one error path every script uses (each command's own cases: tests/test_cli_*.py)."""

import errno
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from read_jax import cli
from read_jax.errors import CheckpointError, ConfigError


def _run(exc, capsys):
  def main(argv):
    raise exc
  code = cli.run(main, [])
  return code, capsys.readouterr().err


@pytest.mark.parametrize("exc, line", [
  (CheckpointError("ckpt/a2v_dit/model.safetensors: not a readable safetensors file"),
   "error: ckpt/a2v_dit/model.safetensors: not a readable safetensors file\n"),
  (ConfigError("--config.train.lr=fast: expected a float, got 'fast'\n  known: lr"),
   "error: --config.train.lr=fast: expected a float, got 'fast'; known: lr\n"),  # always one line
  (FileNotFoundError(errno.ENOENT, "No such file or directory", "face.png"),
   "error: face.png: No such file or directory\n"),
  (OSError(errno.ENOSPC, "No space left on device", "out.mp4"), "error: out.mp4: No space left on device\n"),
  (PermissionError(errno.EACCES, "Permission denied", "/ro/out.mp4"), "error: /ro/out.mp4: Permission denied\n"),
])
def test_user_mistakes_are_one_line_and_exit_2(exc, line, capsys):
  code, err = _run(exc, capsys)
  assert (code, err) == (2, line)


@pytest.mark.parametrize("exc", [ValueError("a bug"), KeyError("k"), OSError(errno.EIO, "I/O error")])
def test_bugs_keep_their_traceback(exc, capsys):
  with pytest.raises(type(exc)):
    _run(exc, capsys)


def test_interrupt_is_one_line(capsys):
  code, err = _run(KeyboardInterrupt(), capsys)
  assert (code, err) == (130, "interrupted (SIGINT)\n")


def test_sigterm_runs_cleanups_and_exits_143(tmp_path):
  """A real SIGTERM: the handler raises in the main thread, so `finally` blocks run (atomic writers clean up)."""
  script = tmp_path / "s.py"
  script.write_text(textwrap.dedent(f"""
    import os, sys, time
    from read_jax import cli
    def main(argv):
      try:
        open({str(tmp_path / 'ready')!r}, "w").close()
        time.sleep(30)
      finally:
        open({str(tmp_path / 'cleaned')!r}, "w").close()
    sys.exit(cli.run(main))
  """))
  proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
  for _ in range(200):
    if (tmp_path / "ready").exists():
      break
    proc.poll()
    if proc.returncode is not None:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=30)
  assert proc.returncode == 143 and err == "interrupted (SIGTERM)\n"
  assert (tmp_path / "cleaned").exists()


def test_help_shows_defaults():
  p = cli.parser("doc")
  p.add_argument("--steps", type=int, default=8, help="denoiser passes")
  assert "(default: 8)" in p.format_help()
