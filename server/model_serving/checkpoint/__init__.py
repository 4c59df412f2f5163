"""Hugging Face checkpoints: inspect, export to GGUF, and rebuild the default model's checkpoint."""
