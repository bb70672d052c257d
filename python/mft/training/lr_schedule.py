"""Learning-rate schedules: linear warmup, then one of seven shapes.

Computed in Python each step and fed to the compiled step as a float32
scalar tensor, so changing the schedule never recompiles the graph.

With peak lr P, floor m (`min_lr`), warmup W, train.steps T and step s
(0-based), warmup is P * (s + 1) / W for s < W; after it,
p = min(1, (s - W) / max(1, T - W)) and

    constant          P
    linear            m + (P - m) * (1 - p)
    cosine            m + (P - m) * (1 + cos(pi p)) / 2
    cosine_restarts   m + (P - m) * (1 + cos(pi * frac(cycles * p))) / 2   (m once p = 1)
    polynomial        m + (P - m) * (1 - p) ** power
    inverse_sqrt      max(m, P * sqrt(tau / (tau + s - W)))   tau = timescale, or W, or 1
    wsd               P until the last D = round(decay_fraction * T) steps, then
                      m + (P - m) * f(q), q = (s - (T - D)) / D, f = 1 - q | (1 + cos(pi q)) / 2 | 1 - sqrt(q)
"""

from __future__ import annotations

import math

from mft.config.hyperparams import wsd_decay_steps
from mft.config.schema import CHOICES, LrScheduleConfig
from mft.errors import ConfigError


def lr_at(step: int, peak_lr: float, total_steps: int, sched: LrScheduleConfig) -> float:
    """Learning rate for optimizer step `step` (0-based)."""
    warmup = sched.warmup_steps
    if warmup > 0 and step < warmup:
        return peak_lr * (step + 1) / warmup
    name, floor = sched.name, sched.min_lr
    if name == "constant":
        return peak_lr
    if name == "inverse_sqrt":
        tau = sched.timescale or max(warmup, 1)
        return max(floor, peak_lr * math.sqrt(tau / (tau + step - warmup)))
    if name == "wsd":
        decay = wsd_decay_steps(total_steps, sched.decay_fraction)
        start = total_steps - decay
        if step < start:
            return peak_lr
        return floor + (peak_lr - floor) * _wsd_shape(sched.decay_shape, min(1.0, (step - start) / decay))
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if name == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif name == "cosine_restarts":
        factor = 0.0 if progress >= 1.0 else 0.5 * (1.0 + math.cos(math.pi * ((sched.cycles * progress) % 1.0)))
    elif name == "polynomial":
        factor = (1.0 - progress) ** sched.power
    elif name == "linear":
        factor = 1.0 - progress
    else:
        allowed = ", ".join(CHOICES["train.lr_schedule.name"])
        raise ConfigError(f"key 'train.lr_schedule.name' must be one of {allowed}, got {name!r}")
    return floor + (peak_lr - floor) * factor


def _wsd_shape(shape: str, q: float) -> float:
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * q))
    if shape == "1-sqrt":
        return 1.0 - math.sqrt(q)
    return 1.0 - q  # linear
