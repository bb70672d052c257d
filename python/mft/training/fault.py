"""Fault handling inside one training process: stop signals and the host copy of the last good state.

- `StopSignals`: SIGTERM / SIGINT only set a flag; the loop notices it at the
  next step boundary, writes an end-of-life checkpoint and returns with
  `EXIT_CODES[signal]` (0 for SIGTERM, 130 for SIGINT). A second SIGINT
  while waiting raises KeyboardInterrupt at once (the user insists).
- `HostSnapshot`: numpy copies of every model parameter and all optimizer
  (and loss-scale) state, refreshed after each completed step into
  preallocated buffers. `Parameter.asnumpy()` on CPU is a view of the
  parameter's memory, so it is copied (`np.copyto`), never kept. `restore()`
  puts the copy back: the state after the last completed step, to save it
  when a step raised, or to undo a step whose loss was not finite.
"""

from __future__ import annotations

import signal
import threading

import numpy as np

EXIT_CODES = {signal.SIGTERM: 0, signal.SIGINT: 130}


class StopSignals:
    """`with StopSignals() as stop:` ... `if stop.requested: ...` (handlers restored on exit)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 1)

    def _handle(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        if self.signum is None:
            self.signum = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in EXIT_CODES:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


class HostSnapshot:
    """A host copy of named Parameters (model weights + optimizer state), taken in place."""

    def __init__(self, tensors: dict):
        self.tensors = dict(tensors)  # name -> Parameter
        self.buffers = {name: np.empty(tuple(p.shape), dtype=p.asnumpy().dtype) for name, p in self.tensors.items()}
        self.taken = False

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buffers.values())

    def take(self) -> None:
        for name, p in self.tensors.items():
            np.copyto(self.buffers[name], p.asnumpy())  # asnumpy() is a view on CPU: copy the values out
        self.taken = True

    def restore(self) -> None:
        import mindspore as ms

        if not self.taken:
            raise RuntimeError("HostSnapshot.restore() before take()")
        for name, p in self.tensors.items():
            p.set_data(ms.Tensor(self.buffers[name].copy(), dtype=p.dtype))


def nonfinite_names(tensors: dict) -> list[str]:
    """Names of the tensors holding a NaN or Inf (checked before every save)."""
    return [name for name, p in tensors.items() if not np.isfinite(p.asnumpy()).all()]
