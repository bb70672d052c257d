"""Range checks for the optimizer and lr-schedule keys, run when a config loads.

Typing and enum choices are the loader's job; this module checks what the
schema cannot say: ranges (lr > 0, betas in [0, 1)), cross-key limits
(warmup <= train.steps), the shape of `train.optimizer.param_groups`, and
keys that only one optimizer / schedule reads but are set for another.
`hyperparameter_problems` yields (dotted key, problem); the loader turns the
first into a ConfigError naming the file that set the key.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator

from mft.config.schema import Config, LrScheduleConfig, OptimizerConfig

GROUP_KEYS = ("pattern", "lr_scale", "weight_decay")

# lr-schedule keys and the one schedule that reads each (min_lr: all but constant).
SCHEDULE_KEYS = {
    "cycles": ("cosine_restarts",),
    "power": ("polynomial",),
    "timescale": ("inverse_sqrt",),
    "decay_fraction": ("wsd",),
    "decay_shape": ("wsd",),
    "min_lr": ("linear", "cosine", "cosine_restarts", "polynomial", "inverse_sqrt", "wsd"),
}
# optimizer sub-sections and the optimizer that reads them.
OPTIMIZER_SECTIONS = ("muon", "adafactor")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def wsd_decay_steps(total_steps: int, decay_fraction: float) -> int:
    """Steps in the WSD decay phase (the last ones of the run); at least 1."""
    return max(1, int(round(decay_fraction * total_steps)))


def hyperparameter_problems(cfg: Config) -> Iterator[tuple[str, str]]:
    yield from _optimizer_problems(cfg.train.optimizer)
    yield from _schedule_problems(cfg.train.lr_schedule, cfg.train.optimizer.lr, cfg.train.steps)
    from mft.config.monitor_checks import monitor_problems  # data.split and monitor.* (validation, spikes)

    yield from monitor_problems(cfg)
    yield from _recompute_problems(cfg)


def _recompute_problems(cfg: Config) -> Iterator[tuple[str, str]]:
    n, t = cfg.train.recompute_layers, cfg.train
    if n < 0:
        yield "train.recompute_layers", f"must be >= 0 (0 = every layer), got {n}"
    elif n and t.recompute == "none":
        yield "train.recompute_layers", (f"is {n} but train.recompute is none: set train.recompute: full (or selective) "
                                         f"to recompute the first {n} layers")
    elif n and cfg.model.pretrained is None and n > cfg.model.num_layers:
        yield "train.recompute_layers", f"is {n} but the model has {cfg.model.num_layers} layers (model.num_layers)"


def _optimizer_problems(o: OptimizerConfig) -> Iterator[tuple[str, str]]:
    k = "train.optimizer."
    if not (_number(o.lr) and o.lr > 0):
        yield k + "lr", f"must be a finite number > 0, got {o.lr!r}"
    b = o.betas
    if not (len(b) == 2 and all(_number(x) and 0 <= x < 1 for x in b)):
        yield k + "betas", f"must be two numbers [beta1, beta2], each in [0, 1), got {b!r}"
    if not (_number(o.eps) and o.eps > 0):
        yield k + "eps", f"must be a finite number > 0, got {o.eps!r}"
    if not (_number(o.weight_decay) and o.weight_decay >= 0):
        yield k + "weight_decay", f"must be a finite number >= 0, got {o.weight_decay!r}"
    yield from _group_problems(o.param_groups)
    m = o.muon
    if not (_number(m.momentum) and 0 <= m.momentum < 1):
        yield k + "muon.momentum", f"must be a number in [0, 1), got {m.momentum!r}"
    if m.ns_steps < 1:
        yield k + "muon.ns_steps", f"must be an integer >= 1, got {m.ns_steps!r}"
    if not (_number(m.update_rms) and m.update_rms > 0):
        yield k + "muon.update_rms", f"must be a finite number > 0, got {m.update_rms!r}"
    a = o.adafactor
    if not (_number(a.decay_rate) and 0 < a.decay_rate <= 1):
        yield k + "adafactor.decay_rate", f"must be a number in (0, 1], got {a.decay_rate!r}"
    if not (_number(a.clip_threshold) and a.clip_threshold > 0):
        yield k + "adafactor.clip_threshold", f"must be a finite number > 0, got {a.clip_threshold!r}"
    for section in OPTIMIZER_SECTIONS:
        value = getattr(o, section)
        if o.name != section and value != type(value)():
            changed = [f.name for f in dataclasses.fields(value) if getattr(value, f.name) != getattr(type(value)(), f.name)]
            yield k + f"{section}.{changed[0]}", f"is read only by train.optimizer.name={section} (name is {o.name}); remove it"


def _group_problems(groups: list) -> Iterator[tuple[str, str]]:
    for i, g in enumerate(groups):
        key = f"train.optimizer.param_groups[{i}]"
        if not isinstance(g, dict):
            yield key, f"must be a mapping with keys {', '.join(GROUP_KEYS)} (pattern required), got {g!r}"
            continue
        unknown = [x for x in g if x not in GROUP_KEYS]
        if unknown:
            yield f"{key}.{unknown[0]}", f"is not a param-group key; allowed: {', '.join(GROUP_KEYS)}"
        pattern = g.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            yield f"{key}.pattern", f"is required: a non-empty regular expression matched (re.search) against parameter names, got {pattern!r}"
        else:
            try:
                re.compile(pattern)
            except re.error as e:
                yield f"{key}.pattern", f"is not a valid regular expression ({e}): {pattern!r}"
        if "lr_scale" in g and not (_number(g["lr_scale"]) and g["lr_scale"] >= 0):
            yield f"{key}.lr_scale", f"must be a finite number >= 0, got {g['lr_scale']!r}"
        if "weight_decay" in g and not (_number(g["weight_decay"]) and g["weight_decay"] >= 0):
            yield f"{key}.weight_decay", f"must be a finite number >= 0, got {g['weight_decay']!r}"
        if "lr_scale" not in g and "weight_decay" not in g:
            yield key, "sets neither lr_scale nor weight_decay; give at least one"


def _schedule_problems(s: LrScheduleConfig, peak_lr: float, total_steps: int) -> Iterator[tuple[str, str]]:
    k = "train.lr_schedule."
    if s.warmup_steps < 0 or (total_steps >= 1 and s.warmup_steps > total_steps):
        yield k + "warmup_steps", f"must be between 0 and train.steps ({total_steps}), got {s.warmup_steps}"
    if not (_number(s.min_lr) and s.min_lr >= 0):
        yield k + "min_lr", f"must be a finite number >= 0, got {s.min_lr!r}"
    elif _number(peak_lr) and s.min_lr > peak_lr:
        yield k + "min_lr", f"must not exceed train.optimizer.lr ({peak_lr}), got {s.min_lr}"
    if s.cycles < 1:
        yield k + "cycles", f"must be an integer >= 1, got {s.cycles}"
    if not (_number(s.power) and s.power > 0):
        yield k + "power", f"must be a finite number > 0, got {s.power!r}"
    if s.timescale < 0:
        yield k + "timescale", f"must be an integer >= 0 (0: warmup_steps, or 1 without warmup), got {s.timescale}"
    if not (_number(s.decay_fraction) and 0 < s.decay_fraction <= 1):
        yield k + "decay_fraction", f"must be a number in (0, 1], got {s.decay_fraction!r}"
    elif s.name == "wsd" and total_steps >= 1 and s.warmup_steps + wsd_decay_steps(total_steps, s.decay_fraction) > total_steps:
        decay = wsd_decay_steps(total_steps, s.decay_fraction)
        yield k + "warmup_steps", f"plus the wsd decay ({decay} steps = decay_fraction * train.steps) exceeds train.steps ({total_steps}), got {s.warmup_steps}"
    defaults = LrScheduleConfig()
    for key, readers in SCHEDULE_KEYS.items():
        if s.name not in readers and getattr(s, key) != getattr(defaults, key):
            yield k + key, f"is read only by train.lr_schedule.name={' | '.join(readers)} (name is {s.name}); remove it"
