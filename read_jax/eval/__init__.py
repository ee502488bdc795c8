"""Evaluation measures: the mouth opening of a synthetic face, for lip-sync checks (DESIGN §3.7)."""

from read_jax.eval.mouth import mouth_opening

__all__ = ["mouth_opening"]
