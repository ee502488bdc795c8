"""Compute and storage dtypes by name, as configs write them (``dtype="bfloat16"``)."""

import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype(name_or_dtype):
  """``"bfloat16"`` → ``jnp.bfloat16``; a dtype passes through."""
  if isinstance(name_or_dtype, str):
    if name_or_dtype not in DTYPES:
      raise ValueError(f"dtype {name_or_dtype!r} is not one of {sorted(DTYPES)}")
    return DTYPES[name_or_dtype]
  return name_or_dtype
