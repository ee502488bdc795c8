"""The inputs and the output folder of the data commands, checked before any model loads or any file is written.

A typo on a command line is an error that names it, not an input quietly skipped an hour later:
a named file or folder that does not exist, a (quoted) glob that matches nothing, a folder with no
file of the kind wanted, an output that is a file or cannot be written into. Each is a
:class:`~read_jax.errors.DataError` whose message starts with the path or option.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Sequence

from read_jax.errors import DataError


def find_files(inputs: Sequence[str], extensions: tuple[str, ...], kind: str = "input") -> list[str]:
  """Files named in ``inputs``, plus the files with one of ``extensions`` under named folders (recursively).

  An input that does not exist but looks like a glob (``'videos/*.mp4'``, quoted so the shell leaves it)
  is expanded. A named file is kept whatever its extension (its loader reports it if unusable). Raises
  when an input does not exist, a glob matches nothing, or no ``kind`` file is found at all.
  """
  out = []
  for item in inputs:
    if os.path.exists(item):
      matches = [item]
    elif glob.has_magic(item):
      matches = sorted(glob.glob(os.path.expanduser(item), recursive=True))
      if not matches:
        raise DataError(f"{item}: no files match")
    else:
      raise DataError(f"{item}: no such file or directory")
    for path in matches:
      if os.path.isdir(path):
        for root, _, files in os.walk(path):
          out.extend(os.path.join(root, f) for f in files if f.lower().endswith(extensions))
      elif not glob.has_magic(item) or path.lower().endswith(extensions):
        out.append(path)
  if not out:
    where = ", ".join(inputs) if inputs else "no inputs given"
    raise DataError(f"{where}: no {kind} files ({', '.join(extensions)}) found")
  return sorted(set(out))


def check_output_dir(path: str, option: str = "--out") -> str:
  """The absolute path of a folder outputs can go into: an existing folder, or one that can be created.

  Tried, not asked (``os.access`` says yes to root on a read-only mount): a file is made and removed in
  the folder, or in its nearest existing parent when it is still to be created. Nothing else is created.
  """
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(path) and not os.path.isdir(path):
    raise DataError(f"{option} {path}: exists and is not a folder")
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise DataError(f"{option} {path}: {existing} is a file, not a folder")
  try:
    fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=existing)
  except OSError as e:
    raise DataError(f"{option} {path}: cannot write into {existing} ({e.strerror})") from None
  os.close(fd)
  os.remove(probe)
  return path


def usable_summary(skipped: dict[str, str] | Sequence[tuple[str, str]], what: str, top: int = 3) -> str:
  """One line for "nothing usable": the first ``top`` skipped inputs with their reasons, then a count."""
  items = list(skipped.items() if isinstance(skipped, dict) else skipped)
  shown = [reason if path in reason else f"{path}: {reason}" for path, reason in items[:top]]
  more = f"; and {len(items) - top} more" if len(items) > top else ""
  return f"{'; '.join(shown)}{more} (no usable {what} among the {len(items)} given; nothing written)"
