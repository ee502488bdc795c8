"""Live serving (docs/serving.md): ``engine`` batches many :class:`read_jax.live.LiveSession` s per device,
``app`` is the FastAPI WebSocket/HTTP front, ``fmp4`` the fragmented-MP4 encoder the browser page plays.
``scripts/serve.py`` runs them."""
