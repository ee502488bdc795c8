"""Live serving (docs/serving.md): ``engine`` batches many :class:`read_jax.live.LiveSession` s per device; ``app``
builds the FastAPI front (``create_app``) from ``protocol`` (the WebSocket messages), ``sessions`` (one live
session), ``videos`` + ``routes_videos`` (POST /v1/videos), ``routes_ops`` (probes, metrics), ``routes_page``,
``security`` (key, Origin, Host), ``uploads`` (bounded decoders), ``limits``, ``metrics``, ``logs``; ``server``
runs it (drain, watchdogs); ``fmp4`` is the fragmented-MP4 encoder the browser page plays. ``scripts/serve.py``
runs them."""
