"""read_jax/configs/demo_vae.py as an experiment file: ``--config configs/demo_vae.py[:arg]`` from a checkout runs the package's own
config (``--config demo_vae.py`` finds it by name anywhere); copy this file to start an experiment of your own."""

from read_jax.configs.demo_vae import get_config  # noqa: F401
