"""The package's imports point one way (docs/design.md §4): a module imports only from its own layer or below.

Layers, lowest first (an arrow means "may be imported by"):

  base (constants, errors, files, config, cli, sharding) → nn → models → ans, audio, speech, media → convert, data, torch
  → train → pipeline, live, eval, aot, bench, demo, serve, configs (loaded by name, never imported by the package)

Also checked: no cycle between modules, no module imports another module's ``_private`` name, and no
function-local import of a read_jax module (a local import is for an optional heavy dependency, never to
hide a cycle). The test parses the source, so it also sees imports that a run would not reach.
"""

import ast
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "read_jax"

LAYERS = [
  ("constants", "errors", "files", "config", "cli", "sharding"),
  ("nn",),
  ("models",),
  ("ans", "audio", "speech", "media"),
  ("convert", "data", "torch"),
  ("train",),
  ("pipeline", "live", "eval", "aot", "bench", "demo", "serve", "configs"),
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in ROOT.rglob("*.py"):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


def _layer(module: str) -> int | None:
  """The layer of ``read_jax.<top>...``; None for the package itself (its lazy public API is at the top)."""
  parts = module.split(".")
  if len(parts) == 1:
    return None
  if parts[1] not in LAYER:
    raise AssertionError(f"{module}: not in any layer of tests/test_layering.py: add it to LAYERS")
  return LAYER[parts[1]]


def _resolve(name: str, modules) -> str:
  """The module a dotted import name refers to (``read_jax.models.vae.to_pixels`` → ``read_jax.models.vae``)."""
  while name not in modules and "." in name:
    name = name.rsplit(".", 1)[0]
  return name


def _imports(path: pathlib.Path, modules):
  """(imported module, imported names, line, is_function_local) for every read_jax import in a file."""
  tree = ast.parse(path.read_text())
  local = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      local.update(id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "read_jax" and not node.level:
      for alias in node.names:
        full = f"{node.module}.{alias.name}"
        target = full if full in modules else _resolve(node.module, modules)
        yield target, (None if full in modules else alias.name), node.lineno, id(node) in local
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.split(".")[0] == "read_jax":
          yield _resolve(alias.name, modules), None, node.lineno, id(node) in local


def _graph():
  modules = _modules()
  edges = {}
  for module, path in modules.items():
    for target, name, line, is_local in _imports(path, modules):
      edges.setdefault(module, []).append((target, name, line, is_local))
  return modules, edges


def test_every_module_has_a_layer():
  for module in _modules():
    _layer(module)


def test_imports_point_down():
  modules, edges = _graph()
  upward = []
  for module, targets in edges.items():
    here = _layer(module)
    for target, _, line, _ in targets:
      there = _layer(target)
      if here is not None and there is None:
        upward.append(f"{modules[module].relative_to(ROOT.parent)}:{line}: {module} imports the package root "
                      "(import the module that defines the name)")
      elif here is not None and there > here:
        upward.append(f"{modules[module].relative_to(ROOT.parent)}:{line}: {module} (layer {here}) imports "
                      f"{target} (layer {there})")
  assert not upward, "upward imports:\n" + "\n".join(upward)


def _private_attributes(path: pathlib.Path, modules):
  """(line, "module._name") for each ``alias._name`` where ``alias`` is an imported read_jax module."""
  tree = ast.parse(path.read_text())
  aliases = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "read_jax":
      for a in node.names:
        if f"{node.module}.{a.name}" in modules:
          aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    elif isinstance(node, ast.Import):
      for a in node.names:
        if a.name in modules and a.asname:
          aliases[a.asname] = a.name
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
        and node.attr.startswith("_") and not node.attr.startswith("__")):
      yield node.lineno, f"{aliases[node.value.id]}.{node.attr}"


def test_no_private_names_across_modules():
  modules, edges = _graph()
  bad = sorted({f"{modules[m].relative_to(ROOT.parent)}:{line}: {m} imports {target}.{name}"
                for m, targets in edges.items() for target, name, line, _ in targets
                if target != m and (name or "").startswith("_")})
  bad += [f"{path.relative_to(ROOT.parent)}:{line}: {m} uses {name}"
          for m, path in modules.items() for line, name in _private_attributes(path, modules)]
  assert not bad, "private names used across modules:\n" + "\n".join(bad)


def test_no_function_local_imports_of_the_package():
  modules, edges = _graph()
  bad = sorted({f"{modules[m].relative_to(ROOT.parent)}:{line}: {m} imports {target} inside a function"
                for m, targets in edges.items() for target, _, line, is_local in targets if is_local})
  assert not bad, "function-local read_jax imports (move them to the top; a cycle shows as an upward edge):\n" \
      + "\n".join(bad)


def test_no_cycles():
  modules, edges = _graph()
  # A package's __init__ re-exporting its submodules is not a cycle of the code: drop parent → child edges.
  graph = {m: sorted({t for t, *_ in targets if t != m and not t.startswith(m + ".")})
           for m, targets in edges.items()}
  cycles, state, stack = [], {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in graph.get(node, ()):
      if state.get(nxt) == "open":
        cycles.append(stack[stack.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt)
    stack.pop()
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node)
  assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


@pytest.mark.parametrize("edge", [("read_jax.models.vae", "read_jax.pipeline", 12), ])
def test_the_checker_sees_an_upward_edge(tmp_path, edge, monkeypatch):
  """The checker itself: a planted upward import is reported (so a green run means something)."""
  module, target, line = edge
  fake = tmp_path / "read_jax"
  for path in ROOT.rglob("*.py"):
    dest = fake / path.relative_to(ROOT)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(path.read_text())
  planted = fake / "models" / "vae.py"
  planted.write_text(planted.read_text() + "\n\ndef _oops():\n  from read_jax.pipeline import ReadPipeline\n")
  monkeypatch.setattr(__import__(__name__), "ROOT", fake)
  with pytest.raises(AssertionError, match="read_jax.models.vae .layer 2. imports read_jax.pipeline"):
    test_imports_point_down()
  with pytest.raises(AssertionError, match="inside a function"):
    test_no_function_local_imports_of_the_package()
