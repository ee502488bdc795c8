"""read_jax/configs/demo_speechae.py as an experiment file: ``--config configs/demo_speechae.py[:arg]`` from a checkout runs the package's own
config (``--config demo_speechae.py`` finds it by name anywhere); copy this file to start an experiment of your own."""

from read_jax.configs.demo_speechae import get_config  # noqa: F401
