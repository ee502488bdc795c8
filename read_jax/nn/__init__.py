"""Layers shared by the models: attention, normalisation, rotary embeddings, causal convolutions."""
