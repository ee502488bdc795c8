"""Networks: the LTX-Video VAE, the Whisper encoder, the SpeechAE and the A2V-DiT."""
