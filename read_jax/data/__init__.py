"""Inputs: ArrayRecord shards read by grain, and the synthetic talking-face set."""
