"""The errors a user can cause and fix: every command prints one of them as one ``error:`` line, exit 2.

Everything else (a bug) keeps its traceback. Each message starts with the file or option it is about,
then the problem: ``assets/x.png: not an image (cannot identify image file)``.
"""


class InputError(ValueError):
  """A user's mistake: a missing or unreadable file, a bad option, a checkpoint that does not fit."""


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
