"""read_jax/configs/speechae.py as an experiment file: ``--config configs/speechae.py[:arg]`` from a checkout runs the package's own
config (``--config speechae.py`` finds it by name anywhere); copy this file to start an experiment of your own."""

from read_jax.configs.speechae import get_config  # noqa: F401
