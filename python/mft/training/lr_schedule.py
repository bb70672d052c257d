"""Learning-rate schedules: linear warmup, then cosine / linear decay or constant.

Computed in Python each step and fed to the jitted step as a scalar tensor,
so changing the schedule never recompiles the graph.
"""

from __future__ import annotations

import math

from mft.config.schema import LrScheduleConfig


def lr_at(step: int, peak_lr: float, total_steps: int, sched: LrScheduleConfig) -> float:
    """Learning rate for optimizer step `step` (0-based)."""
    if sched.warmup_steps > 0 and step < sched.warmup_steps:
        return peak_lr * (step + 1) / sched.warmup_steps
    if sched.name == "constant":
        return peak_lr
    decay_steps = max(1, total_steps - sched.warmup_steps)
    progress = min(1.0, (step - sched.warmup_steps) / decay_steps)
    if sched.name == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:  # linear
        factor = 1.0 - progress
    return sched.min_lr + (peak_lr - sched.min_lr) * factor
