"""read_jax/configs/distill.py as an experiment file: ``--config configs/distill.py[:arg]`` from a checkout runs the package's own
config (``--config distill.py`` finds it by name anywhere); copy this file to start an experiment of your own."""

from read_jax.configs.distill import get_config  # noqa: F401
