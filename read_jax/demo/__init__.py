"""The bundled demo model: its build from scratch (``build``, scripts/train_demo.py) and the fast in-memory VAE
training for an accelerator (``vae``, scripts/train_demo_vae.py). Its settings are configs/demo*.py."""
