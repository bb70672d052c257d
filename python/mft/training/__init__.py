"""Training: trainer, jitted train step, AdamW, lr schedules, loss, checkpoints."""
