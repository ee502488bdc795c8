"""The experiment configs: one file per experiment, ``get_config(arg) -> ml_collections.ConfigDict``.

Loaded by name with :func:`read_jax.config.load_config` (``demo.py:tiny``, ``a2v_dit.py``, ...), not imported: a
bare name is looked up here, so the installed package finds the configs it uses itself (the demo build, the
benchmarks) without a source checkout. An experiment of your own is a file anywhere that builds on one of these
(``from read_jax.configs import a2v_dit``, then ``a2v_dit.get_config(arg)`` and changes); the repository's
``configs/`` holds one such file per config here.
"""
