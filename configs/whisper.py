"""read_jax/configs/whisper.py as an experiment file: ``--config configs/whisper.py[:arg]`` from a checkout runs the package's own
config (``--config whisper.py`` finds it by name anywhere); copy this file to start an experiment of your own."""

from read_jax.configs.whisper import get_config  # noqa: F401
