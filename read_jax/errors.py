"""The errors a user can cause and fix: every command prints one of them as one ``error:`` line, exit 2.

Everything else (a bug) keeps its traceback. Each message starts with the file or option it is about,
then the problem: ``assets/x.png: not an image (cannot identify image file)``. One type per kind of mistake:
a file or checkpoint (:class:`CheckpointError`, :class:`AudioError`, :class:`MediaError`, :class:`DataError`), a
setting (:class:`ConfigError`: an argument, an option, a config key).

A mistake about an argument of a library function is raised with ``arg`` (and ``value``), so that each caller
reads it in its own words: Python sees ``steps=4: …`` (the argument), a command ``--steps 4: …`` (its flag,
the argument's name with dashes: :func:`read_jax.cli.error_message`), a server the field it came from.
"""


class InputError(ValueError):
  """A user's mistake: a missing or unreadable file, a bad option, a checkpoint that does not fit.

  ``InputError("problem", arg="steps", value=4)`` reads ``steps=4: problem``; :meth:`worded` renders it for
  another caller (``--steps 4: problem`` on a command line)."""

  def __init__(self, message: str = "", *, arg: str | None = None, value=None):
    self.arg, self.value, self.problem = arg, value, message
    super().__init__(self.worded())

  def worded(self, name: str | None = None, separator: str = "=") -> str:
    """The message with the argument called ``name`` (default: its own), its value after ``separator``."""
    if self.arg is None:
      return self.problem
    shown = repr(self.value) if separator == "=" else str(self.value)
    return f"{name or self.arg}{separator}{shown}: {self.problem}"


class CheckpointError(InputError):
  """A checkpoint that cannot be loaded: missing file, corrupt file, non-finite or mis-shaped tensors."""


class ConfigError(InputError):
  """A config spec or override that cannot be applied: unknown file or key, a value of the wrong type."""


class AudioError(InputError):
  """An audio file or waveform that cannot be used: missing, unreadable, empty or not finite."""


class MediaError(InputError):
  """An image, audio or video file that cannot be used (missing, unreadable, empty, unwritable)."""


class DataError(InputError):
  """Training or preprocessing data that is missing or unusable (no shard matches a glob, ...)."""
