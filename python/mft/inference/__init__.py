"""Inference: KV cache, sampling, generate, text streaming."""
