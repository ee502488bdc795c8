"""Evaluation (docs/design.md §3.7): ``mouth`` measures the mouth opening of a synthetic face from pixels, ``talking``
scores a generated talking-head video (lip sync, identity colours, clip boundaries), ``probes`` reads the mouth
out of a model's latents and speech, ``demo`` runs them all on a demo model (scripts/eval_demo.py)."""

from read_jax.eval.mouth import mouth_opening

__all__ = ["mouth_opening"]
