"""read_jax/configs/vae_ltx_causal.py as an experiment file: ``--config configs/vae_ltx_causal.py[:arg]`` from a checkout runs the package's own
config (``--config vae_ltx_causal.py`` finds it by name anywhere); copy this file to start an experiment of your own."""

from read_jax.configs.vae_ltx_causal import get_config  # noqa: F401
