"""read_jax/configs/vae_ltx.py as an experiment file: ``--config configs/vae_ltx.py[:arg]`` from a checkout runs the package's own
config (``--config vae_ltx.py`` finds it by name anywhere); copy this file to start an experiment of your own."""

from read_jax.configs.vae_ltx import get_config  # noqa: F401
