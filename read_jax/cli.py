"""One convention for every command in ``scripts/``: the parser, the progress bar, the error path.

A script is ``cli.exit(cli.run(main))`` around a ``main(argv) -> int`` that parses with :func:`parser`
and makes one call into the package. :func:`run` turns

* a user's mistake (:class:`read_jax.errors.InputError` and its kinds; an ``OSError`` about a file:
  missing, not writable, disk full) into one ``error: <file>: <problem>`` line on stderr, exit code 2;
* SIGINT (Ctrl-C) and SIGTERM into one ``interrupted`` line, exit code 130 / 143. Writers in the package
  are atomic (:func:`read_jax.files.atomic_path`), so the interrupt leaves no partial output and an
  existing output untouched;

and lets every other exception (a bug) keep its traceback.
"""

from __future__ import annotations

import _thread
import argparse
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from read_jax.errors import InputError

EXIT_USER_ERROR = 2
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM

# OSErrors that are about the user's files, not bugs.
_USER_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST,
                errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENAMETOOLONG, errno.EFBIG}


class Terminated(BaseException):
  """Raised in the main thread by SIGTERM (like KeyboardInterrupt for SIGINT), so that cleanups run."""


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
  """The module docstring as written, and every option's default in ``--help``."""


CACHE_ENV = "READ_JAX_CACHE"  # the persistent compilation cache's folder; "off" turns it off


def compilation_cache(directory: str | None = None) -> str | None:
  """Turn on JAX's persistent compilation cache, so a second run of a command compiles nothing it compiled
  before (every program is kept, however quick its compile). ``directory``: else ``$READ_JAX_CACHE``, else
  ``~/.cache/read_jax/jax``; ``"off"`` leaves the cache off. Returns the folder in use (None: off)."""
  import jax  # here: the error path above never needs jax

  directory = directory or os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "read_jax",
                                                                     "jax")
  if directory == "off":
    return None
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    print(f"warning: {directory}: no compilation cache ({e.strerror})", file=sys.stderr)
    return None
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory


def parser(doc: str | None, **kwargs) -> argparse.ArgumentParser:
  """The argument parser every script uses: its docstring as the description, defaults shown."""
  return argparse.ArgumentParser(description=doc, formatter_class=_Formatter, **kwargs)


def progress(iterable=None, *, total=None, desc: str | None = None, unit: str = "it", **kwargs):
  """The progress bar every long command shows (tqdm on stderr; off when stderr is not a terminal
  unless ``READ_JAX_PROGRESS=1``)."""
  import tqdm
  disable = not (sys.stderr.isatty() or os.environ.get("READ_JAX_PROGRESS") == "1")
  return tqdm.tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=disable, **kwargs)


def error_message(err: BaseException) -> str | None:
  """The one-line message for a user's mistake, or None when ``err`` is a bug."""
  if isinstance(err, InputError) and err.arg is not None:  # an argument's mistake, named as its flag
    text = err.worded("--" + err.arg.replace("_", "-"), " ")
  elif isinstance(err, InputError):
    text = str(err) or type(err).__name__
  elif isinstance(err, OSError) and err.errno in _USER_ERRNOS:
    what = err.filename if err.filename is not None else ""
    text = f"{what}: {err.strerror}" if what else (err.strerror or str(err))
  else:
    return None
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return "; ".join(lines)


def fail(message: str) -> int:
  """Print ``error: message`` and return the user-error exit code (for checks a script does itself)."""
  print(f"error: {message}", file=sys.stderr)
  return EXIT_USER_ERROR


def exit(code: int):
  """Leave the process with ``code`` (a script's last line: ``cli.exit(cli.run(main))``).

  After an interrupt the exit is immediate (``os._exit``): the interrupt can land inside an XLA compile, which
  goes on in its own thread, and the interpreter's teardown then crashes under it (SIGSEGV instead of
  130/143). Everything the command wrote was cleaned up by then (atomic writers, ``finally`` blocks)."""
  if code in (EXIT_SIGINT, EXIT_SIGTERM):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
  sys.exit(code)


def _raise_terminated(signum, frame):
  raise Terminated()


def _redeliver_swallowed_interrupts(previous):
  """A ``sys.unraisablehook`` that signals an interrupt again when Python dropped it.

  Python drops an exception raised inside a gc callback or a ``__del__`` ("Exception ignored in ..."), and
  JAX runs one on every collection: a Ctrl-C or SIGTERM landing there would be lost and the job would carry
  on to the end. The signal is sent again from another thread a moment later, so that its handler runs in
  the main thread's ordinary code (sent from inside the hook it would be dropped again)."""

  def hook(unraisable):
    for kind, signum in ((KeyboardInterrupt, signal.SIGINT), (Terminated, signal.SIGTERM)):
      if unraisable.exc_type is not None and issubclass(unraisable.exc_type, kind):
        timer = threading.Timer(0.05, _thread.interrupt_main, (signum,))
        timer.daemon = True
        timer.start()
        return
    previous(unraisable)

  return hook


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
  """Call ``main(argv)`` under the convention above and return the exit code."""
  previous, unraisable = None, sys.unraisablehook
  try:
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    sys.unraisablehook = _redeliver_swallowed_interrupts(unraisable)
  except ValueError:  # not the main thread: leave SIGTERM alone
    pass
  try:
    return int(main(argv) or 0)
  except KeyboardInterrupt:
    print("interrupted (SIGINT)", file=sys.stderr)
    return EXIT_SIGINT
  except Terminated:
    print("interrupted (SIGTERM)", file=sys.stderr)
    return EXIT_SIGTERM
  except (InputError, OSError) as err:
    message = error_message(err)
    if message is None:
      raise
    return fail(message)
  finally:
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
      sys.unraisablehook = unraisable


def step_counts(text: str, flag: str = "--steps") -> list[int]:
  """``--steps 1,2,4`` → [1, 2, 4] (ascending, each once); anything else is the user's mistake."""
  try:
    counts = [int(x) for x in text.split(",") if x.strip()]
  except ValueError:
    counts = []
  if not counts or min(counts) < 1:
    raise InputError(f"{flag} {text}: need comma-separated positive integers, e.g. 1,2,4,8,16")
  return sorted(set(counts))
