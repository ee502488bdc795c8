"""PyTorch ``.pth`` state dicts, read once to be written as safetensors (the project's one unpickling).

Weights everywhere else are read from safetensors; a published checkpoint that exists only as a ``.pth``
(the evaluation's metric networks: ``read_jax.eval.weights``) goes through :func:`read_state_dict` first,
which unpickles with ``torch.load(weights_only=True)``: tensors and plain containers only, no code runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from read_jax.errors import CheckpointError, InputError


def read_state_dict(path: str) -> dict:
  """A PyTorch state dict from ``path``: ``torch.load(weights_only=True)`` on the CPU, so nothing but
  tensors and plain containers is unpickled. Anything else (a pickled whole module, a file that is not a
  torch file, a nested checkpoint) is a CheckpointError naming the file."""
  try:
    import torch  # optional, heavy: only this import needs it
  except ImportError:
    raise InputError(f"{path}: reading a PyTorch weight file needs torch (pip install torch)") from None
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: no such file")
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, … for a bad file
    text = " ".join(str(e).split())
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:  # a pickled object of some class: weights_only would have to run its code
      raise CheckpointError(
        f"{path}: holds pickled Python objects ({refused.group(1)}), not a plain state dict "
        f"(torch.load(weights_only=True) refuses to run their code). If it is a whole pickled module from a "
        f"source you trust, re-save its state dict "
        f"with the reference installed: python -c \"import torch; torch.save(torch.load('{path}', "
        f"weights_only=False).state_dict(), 'state_dict.pth')\", then import that file") from None
    detail = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
    detail = detail.group(1) if detail else text[:300]
    raise CheckpointError(f"{path}: not a readable PyTorch file ({type(e).__name__}: {detail}); "
                          "truncated or corrupt?") from None
  if not isinstance(state, Mapping):
    raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict ({{name: tensor}})")
  bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
  if bad:
    raise CheckpointError(f"{path}: not a flat state dict: {len(bad)} entries are not tensors (first: "
                          f"{', '.join(map(str, bad[:5]))}); pass the {{name: tensor}} dict itself")
  return dict(state)
