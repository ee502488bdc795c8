"""read_jax/configs/demo.py as an experiment file: ``--config configs/demo.py[:arg]`` from a checkout runs the package's own
config (``--config demo.py`` finds it by name anywhere); copy this file to start an experiment of your own."""

from read_jax.configs.demo import get_config  # noqa: F401
