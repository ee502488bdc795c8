"""Loading experiment configs: ``configs/<name>.py`` files with ``get_config(arg) -> ConfigDict``.

Spec forms accepted by :func:`load_config` (and so by every script's ``--config``):
  ``speechae.py`` / ``speechae``     a bare name, looked up in the repository's ``configs/``
  ``configs/speechae.py:tiny``        a path, with the argument passed to ``get_config``
Overrides ``--config.train.lr=1e-5`` are applied afterwards, with the type of the existing value;
the returned config is locked, so a misspelt key is an error, not a silent default.
"""

from __future__ import annotations

import ast
import importlib.util
import os

import ml_collections

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def parse_arg(arg: str | None, **defaults):
  """``"tiny,steps=10"`` → ConfigDict(tiny=True, steps=10) over ``defaults`` (big_vision's convention)."""
  out = ml_collections.ConfigDict(dict(defaults))
  for item in filter(None, (arg or "").split(",")):
    if "=" in item:
      key, value = item.split("=", 1)
      if key not in out:
        raise ValueError(f"config argument {key!r} is not one of {sorted(out.keys())}")
      out[key] = _coerce(value, out[key])
    else:
      if item not in out:
        raise ValueError(f"config argument {item!r} is not one of {sorted(out.keys())}")
      out[item] = True
  return out


def _resolve_path(path: str) -> str:
  candidates = [path]
  if not path.endswith(".py"):
    candidates.append(path + ".py")
  for c in list(candidates):
    candidates.append(os.path.join(CONFIG_DIR, os.path.basename(c)))
  for c in candidates:
    if os.path.isfile(c):
      return c
  raise FileNotFoundError(f"config {path!r}: no such file (looked in . and {CONFIG_DIR})")


def load_config(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  path, _, arg = spec.partition(":")
  path = _resolve_path(path)
  module_spec = importlib.util.spec_from_file_location(f"read_jax_config_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  apply_overrides(config, overrides)
  config.lock()
  return config


def apply_overrides(config: ml_collections.ConfigDict, overrides) -> None:
  """Apply ``config.a.b=value`` / ``--config.a.b=value`` strings in order."""
  for item in overrides:
    item = item.lstrip("-")
    if not item.startswith("config.") or "=" not in item:
      raise ValueError(f"override {item!r} must look like --config.key=value")
    dotted, value = item[len("config."):].split("=", 1)
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
      if p not in node:
        raise KeyError(f"override {dotted!r}: no key {p!r}")
      node = node[p]
    if leaf not in node:
      raise KeyError(f"override {dotted!r}: no key {leaf!r} (known: {sorted(node.keys())})")
    node[leaf] = _coerce(value, node[leaf])


def _coerce(value: str, current):
  if isinstance(current, bool):
    if value.lower() in ("1", "true", "yes"):
      return True
    if value.lower() in ("0", "false", "no"):
      return False
    raise ValueError(f"expected a boolean, got {value!r}")
  if isinstance(current, int):
    return int(value)
  if isinstance(current, float):
    return float(value)
  if isinstance(current, str) or current is None:
    if current is None:
      try:
        return ast.literal_eval(value)
      except (ValueError, SyntaxError):
        return value
    return value
  if isinstance(current, (tuple, list)):
    parsed = ast.literal_eval(value)
    return type(current)(parsed)
  return ast.literal_eval(value)
