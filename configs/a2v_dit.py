"""read_jax/configs/a2v_dit.py as an experiment file: ``--config configs/a2v_dit.py[:arg]`` from a checkout runs the package's own
config (``--config a2v_dit.py`` finds it by name anywhere); copy this file to start an experiment of your own."""

from read_jax.configs.a2v_dit import get_config  # noqa: F401
