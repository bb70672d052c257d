"""Monitoring: metrics.jsonl, TensorBoard event files, progress display."""
