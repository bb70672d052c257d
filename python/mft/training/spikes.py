"""Loss- and grad-norm-spike detection over a running median (`monitor.spike`).

Definitions (docs/feature/monitor.md):
- history: the last `window` *accepted* values of a signal (loss, grad_norm).
  A spiking step's values are not added, so a spike does not raise its own
  baseline.
- a step spikes when, with at least `min_history` accepted values,
  value > factor x median(history) for loss or grad_norm (factor 0: that
  signal is not checked), or when the value is not finite.
- `consecutive` spikes in a row are no longer a spike but a new level: the
  history restarts from those values (action warn), or the run stops with an
  error (action skip: discarding every update from now on would silently
  stop training; roll back or lower the lr instead).

`limits()` gives the thresholds for the next step *before* it runs, so the
compiled step can decide to drop the update itself (action skip: the train
step's gate compares loss and grad norm with them before the optimizer runs).
The detector is plain Python on floats: it never touches MindSpore.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from mft.errors import MftError

SIGNALS = ("loss", "grad_norm")


@dataclass
class SpikeVerdict:
    spike: bool  # this step spiked
    reasons: list  # e.g. ["loss 9.1 > 1.5 x median 3.2"]
    new_level: bool = False  # `consecutive` spikes in a row: history restarted (warn)


class SpikeDetector:
    def __init__(self, window: int = 50, min_history: int = 10, loss_factor: float = 1.5,
                 grad_norm_factor: float = 4.0, consecutive: int = 5, action: str = "warn"):
        if window < 1 or not 1 <= min_history <= window or consecutive < 1:
            raise MftError(f"monitor.spike: need window >= 1, 1 <= min_history <= window, consecutive >= 1 "
                           f"(got {window}, {min_history}, {consecutive})")
        self.window = window
        self.min_history = min_history
        self.factors = {"loss": float(loss_factor), "grad_norm": float(grad_norm_factor)}
        self.consecutive = consecutive
        self.action = action
        self.history = {s: deque(maxlen=window) for s in SIGNALS}
        self.run = []  # the values of the current run of consecutive spikes
        self.total = 0  # spikes so far (this process)

    @classmethod
    def from_config(cls, spike_cfg) -> "SpikeDetector":
        return cls(spike_cfg.window, spike_cfg.min_history, spike_cfg.loss_factor, spike_cfg.grad_norm_factor,
                   spike_cfg.consecutive, spike_cfg.action)

    def _median(self, signal: str) -> float | None:
        h = self.history[signal]
        if len(h) < self.min_history:
            return None
        v = sorted(h)
        n = len(v)
        return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])

    def threshold(self, signal: str) -> float:
        """Largest value of `signal` that is not a spike now (inf: not checked / not enough history)."""
        factor = self.factors[signal]
        med = self._median(signal)
        if factor <= 0 or med is None:
            return math.inf
        return factor * med

    def limits(self) -> tuple[float, float]:
        """(max loss, max grad norm) for the coming step; the compiled gate drops updates above them."""
        return self.threshold("loss"), self.threshold("grad_norm")

    def observe(self, loss: float, grad_norm: float) -> SpikeVerdict:
        values = {"loss": float(loss), "grad_norm": float(grad_norm)}
        reasons = []
        for s in SIGNALS:
            v, limit = values[s], self.threshold(s)
            if not math.isfinite(v):
                reasons.append(f"{s} is {v}")
            elif v > limit:
                reasons.append(f"{s} {v:.4g} > {self.factors[s]:g} x median {limit / self.factors[s]:.4g}")
        if not reasons:
            self.run = []
            for s in SIGNALS:
                self.history[s].append(values[s])
            return SpikeVerdict(False, [])
        self.total += 1
        self.run.append(values)
        if len(self.run) < self.consecutive:
            return SpikeVerdict(True, reasons)
        if self.action in ("skip", "rollback"):
            raise MftError(
                f"{len(self.run)} consecutive steps spiked (monitor.spike.consecutive={self.consecutive}; last: "
                f"{'; '.join(reasons)}); with monitor.spike.action={self.action} none of their updates were kept. This is a "
                "persistent change, not a spike: resume from an earlier checkpoint with a lower train.optimizer.lr, "
                "or check the data"
            )
        # warn: a level shift - the run of spikes becomes the new baseline
        finite = [r for r in self.run if all(math.isfinite(r[s]) for s in SIGNALS)]
        for s in SIGNALS:
            self.history[s].clear()
            self.history[s].extend(r[s] for r in finite)
        self.run = []
        return SpikeVerdict(True, reasons, new_level=True)
