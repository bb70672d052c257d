"""Load-time checks for data.split and the monitor keys (validation, spikes, MFU).

`monitor_problems` yields (dotted key, problem) like `hyperparameter_problems`,
which calls it, so the loader names the file that set the key.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from mft.config.schema import Config
from mft.data.split import parse_split
from mft.errors import MftError


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def valid_fraction(split) -> float:
    """The valid share of a Megatron split string ("98,2,0" -> 0.02); 0 for None."""
    if split is None:
        return 0.0
    return parse_split(split)[1]


def monitor_problems(cfg: Config) -> Iterator[tuple[str, str]]:
    m = cfg.monitor
    split = cfg.data.split
    if split is not None:
        try:
            ratios = parse_split(split)
        except MftError as e:
            yield "data.split", f"{e} (Megatron's train,valid,test weights, e.g. '98,2,0')"
            return
        if ratios[0] <= 0:
            yield "data.split", f"{split!r} leaves no documents to train on (the first weight is train)"
            return
    if m.eval_every < 0:
        yield "monitor.eval_every", f"must be >= 0 (0 = no validation), got {m.eval_every}"
    if m.eval_every > 0 and valid_fraction(split) <= 0:
        yield "monitor.eval_every", (
            f"={m.eval_every} needs held-out documents: set data.split with a validation weight, e.g. data.split='98,2,0'"
        )
    if m.eval_batches < 1:
        yield "monitor.eval_batches", f"must be >= 1, got {m.eval_batches}"
    if not _finite(m.peak_tflops) or m.peak_tflops < 0:
        yield "monitor.peak_tflops", f"must be >= 0 (0 = measure a matmul ceiling at start), got {m.peak_tflops}"
    s = m.spike
    if s.window < 1:
        yield "monitor.spike.window", f"must be >= 1, got {s.window}"
    if not 1 <= s.min_history <= max(s.window, 1):
        yield "monitor.spike.min_history", f"must be in [1, monitor.spike.window={s.window}], got {s.min_history}"
    for key in ("loss_factor", "grad_norm_factor"):
        v = getattr(s, key)
        if not _finite(v) or not (v == 0 or v > 1):
            yield f"monitor.spike.{key}", f"must be 0 (not checked) or > 1 (a multiple of the running median), got {v}"
    if s.action != "off" and s.loss_factor == 0 and s.grad_norm_factor == 0:
        yield "monitor.spike.action", f"={s.action!r} with loss_factor and grad_norm_factor both 0 checks nothing; set action=off"
    if s.consecutive < 1:
        yield "monitor.spike.consecutive", f"must be >= 1, got {s.consecutive}"
    if s.action == "rollback" and cfg.checkpoint.every_steps <= 0:
        yield "monitor.spike.action", "=rollback reloads the newest checkpoint; set checkpoint.every_steps > 0"
