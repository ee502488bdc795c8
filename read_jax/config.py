"""Loading experiment configs: ``<name>.py`` files with ``get_config(arg) -> ConfigDict`` (read_jax/configs/).

Spec forms accepted by :func:`load_config` (and so by every script's ``--config``):
  ``speechae.py`` / ``speechae``     a bare name, looked up in the package's ``read_jax/configs/``
  ``configs/speechae.py:tiny``        a path, with the argument passed to ``get_config``
Overrides ``--config.train.lr=1e-5`` are applied afterwards, with the type of the existing value;
the returned config is locked, so a misspelt key is an error, not a silent default. Every mistake
(unknown file, key or argument, a value of the wrong type) is one :class:`~read_jax.errors.ConfigError`
naming the spec or override: ``--config.train.lr=fast: expected a float, got 'fast'``.

Why not ``ml_collections.config_flags``: it defines the ``--config`` flag on absl's global
``FLAGS``, so every script would need ``absl.app.run`` and could not keep its argparse parser (nor be
called as ``main(argv)`` from tests). This loader keeps the same spec and override syntax and adds the
bare-name lookup in ``read_jax/configs/`` (``--config speechae.py:tiny`` from any working directory, installed or
not).
"""

from __future__ import annotations

import ast
import importlib.util
import os

import ml_collections

from read_jax.errors import ConfigError

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")  # read_jax/configs


def parse_arg(arg: str | None, **defaults):
  """``"tiny,steps=10"`` → ConfigDict(tiny=True, steps=10) over ``defaults`` (big_vision's convention)."""
  out = ml_collections.ConfigDict(dict(defaults))
  for item in filter(None, (arg or "").split(",")):
    key, has_value, value = item.partition("=")
    if key not in out:
      known = ", ".join(sorted(out.keys())) or "none"
      raise ConfigError(f"unknown config argument {key!r} (known: {known})")
    out[key] = _coerce(value, out[key], f"config argument {item!r}") if has_value else True
  return out


def config_names() -> list[str]:
  """The experiment files of ``read_jax/configs/`` (what a bare ``--config`` name can be)."""
  if not os.path.isdir(CONFIG_DIR):
    return []
  return sorted(f for f in os.listdir(CONFIG_DIR) if f.endswith(".py") and not f.startswith("_"))


def _resolve_path(spec: str, path: str) -> str:
  candidates = [path] if path.endswith(".py") else [path, path + ".py"]
  candidates += [os.path.join(CONFIG_DIR, os.path.basename(c)) for c in candidates]
  for c in candidates:
    if os.path.isfile(c):
      return c
  raise ConfigError(f"--config {spec}: no such config file (looked in . and {CONFIG_DIR}; known: "
                    f"{', '.join(config_names()) or 'none'})")


def load_config(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """The locked config of ``spec`` (``name[.py][:arg]``) with ``overrides`` applied."""
  path, _, arg = spec.partition(":")
  path = _resolve_path(spec, path)
  module_spec = importlib.util.spec_from_file_location(f"read_jax_config_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not callable(getattr(module, "get_config", None)):
    raise ConfigError(f"--config {spec}: {path} defines no get_config(arg) function")
  try:
    config = module.get_config(arg or None)
  except ConfigError as err:  # parse_arg's message, prefixed with the spec it came from
    raise ConfigError(f"--config {spec}: {err}") from None
  apply_overrides(config, overrides)
  config.lock()
  return config


def apply_overrides(config: ml_collections.ConfigDict, overrides) -> None:
  """Apply ``config.a.b=value`` / ``--config.a.b=value`` strings in order."""
  for item in overrides:
    flag = "--" + item.lstrip("-")  # the message names the override as it is typed on the command line
    body = flag[2:]
    if not body.startswith("config.") or "=" not in body:
      raise ConfigError(f"{item}: an override looks like --config.KEY=VALUE (e.g. --config.train.lr=1e-5)")
    dotted, value = body[len("config."):].split("=", 1)
    keys = dotted.split(".")
    node, where = config, "config"
    for depth, key in enumerate(keys):
      if not isinstance(node, ml_collections.ConfigDict):
        raise ConfigError(f"{flag}: {where} is {_KIND.get(type(node), type(node).__name__)} ({node!r}), "
                          "not a section with keys")
      if key not in node:
        raise ConfigError(f"{flag}: no key {key!r} in {where} (known: {', '.join(sorted(node.keys()))})")
      if depth < len(keys) - 1:
        node, where = node[key], f"{where}.{key}"
    leaf = keys[-1]
    current = node[leaf]
    if isinstance(current, ml_collections.ConfigDict):
      raise ConfigError(f"{flag}: {where}.{leaf} is a section; override its keys "
                        f"(--config.{dotted}.KEY=VALUE; keys: {', '.join(sorted(current.keys()))})")
    node[leaf] = _coerce(value, current, flag)


_KIND = {bool: "a boolean (true/false)", int: "an integer", float: "a float", str: "a string",
         tuple: "a tuple, e.g. (1, 2)", list: "a list, e.g. [1, 2]"}


def _coerce(value: str, current, what: str):
  """``value`` parsed as the type of ``current``; a ConfigError naming ``what`` when it is not one."""
  kind = type(current)
  try:
    if isinstance(current, bool):
      if value.lower() in ("1", "true", "yes"):
        return True
      if value.lower() in ("0", "false", "no"):
        return False
      raise ValueError(value)
    if isinstance(current, int):
      return int(value)
    if isinstance(current, float):
      return float(value)
    if isinstance(current, str):
      return value
    if current is None:  # no type to follow: a Python literal if it is one, else the string
      try:
        return ast.literal_eval(value)
      except (ValueError, SyntaxError):
        return value
    parsed = ast.literal_eval(value)
    if isinstance(current, (tuple, list)):
      if not isinstance(parsed, (tuple, list)):
        raise ValueError(value)
      return kind(parsed)
    if not isinstance(parsed, kind):
      raise ValueError(value)
    return parsed
  except (ValueError, SyntaxError, TypeError):
    expected = _KIND.get(kind, f"a {kind.__name__}")
    raise ConfigError(f"{what}: expected {expected}, got {value!r}") from None
