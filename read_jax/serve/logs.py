"""The server's logs: one record per session open, close and error and per video request, each with its session
or request id, as text or as JSON lines (``scripts/serve.py --log-json``) for a log collector.

  log = logging.getLogger("read_jax.serve")
  event(log, "session.close", session="3f2a9c01b7d4", code=1008, reason="idle: ...")
"""

from __future__ import annotations

import json
import logging
import time

LOGGER = "read_jax.serve"
# A library's convention: nothing is printed until the program configures logging (scripts/serve.py does, with
# config() below); otherwise Python's last-resort handler would print each warning's bare event name.
logging.getLogger(LOGGER).addHandler(logging.NullHandler())


def event(log: logging.Logger, name: str, level: int = logging.INFO, exc_info=None, **fields) -> None:
  """One structured record: ``name`` as the message, ``fields`` as its attributes (the JSON formatter writes
  them as keys; the text formatter as key=value)."""
  log.log(level, name, extra={"fields": fields}, exc_info=exc_info)


class JsonFormatter(logging.Formatter):
  """One JSON object per line: time, level, logger, event (the message) and the record's fields."""

  def format(self, record: logging.LogRecord) -> str:
    out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
           "level": record.levelname.lower(), "logger": record.name, "event": record.getMessage()}
    out.update(getattr(record, "fields", {}))
    if record.exc_info:
      out["traceback"] = self.formatException(record.exc_info)
    return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
  """``time level logger event key=value ...``."""

  def format(self, record: logging.LogRecord) -> str:
    fields = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in getattr(record, "fields", {}).items())
    line = f"{self.formatTime(record)} {record.levelname.lower()} {record.name} {record.getMessage()}"
    line = f"{line} {fields}" if fields else line
    if record.exc_info:
      line += "\n" + self.formatException(record.exc_info)
    return line


def config(json_lines: bool, level: str = "info") -> dict:
  """A ``logging.config.dictConfig`` for the server and uvicorn's own loggers (uvicorn.Config(log_config=...))."""
  formatter = {"()": f"{__name__}.{'JsonFormatter' if json_lines else 'TextFormatter'}"}
  handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
  level = level.upper()
  return {"version": 1, "disable_existing_loggers": False, "formatters": {"default": formatter},
          "handlers": {"default": handler},
          "loggers": {name: {"handlers": ["default"], "level": level, "propagate": False}
                      for name in (LOGGER, "read_jax.serve.engine", "uvicorn", "uvicorn.error", "uvicorn.access")}}
