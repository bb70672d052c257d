"""Bytes communicated per rank, counted at the comm layer (`mft.parallel.comm`'s collective Cells).

`counting()` wraps the `__call__` of every collective Cell in `comm.py`
for the duration of a `with` block and records each call: the collective,
the group size, the bytes of the input, and whether the backend runs it
natively or through a CPU fallback. Calls nested inside another collective
(the gather inside an all-reduce max) are part of the outer one and not
counted twice. Only calls the Python interpreter makes are seen: run the
step in PyNative (`run.mode=pynative`, `TrainStep(jit=False)`); a compiled
graph calls its collectives without Python.

Each call is costed per rank with the bandwidth-optimal ring algorithms
(B = bytes of this rank's input, n = group size):

| collective | native (ring) | CPU fallback as built in comm.py |
|---|---|---|
| all_reduce | 2(n-1)/n B | — (always native) |
| all_gather (input B per rank) | (n-1) B | all_reduce of n B: 2(n-1) B |
| broadcast | B | all_reduce of B: 2(n-1)/n B |
| reduce_scatter (input B) | (n-1)/n B | all_reduce of B: 2(n-1)/n B |
| all_to_all (input B) | (n-1)/n B | all_gather: (n-1) B (or its fallback) |
| shift / send_recv | B | all_gather of B (or broadcast when n = 2) |

`Ledger.totals()` gives both columns: `issued` (what this backend really
ran) and `native` (what the same calls cost where every collective is
native), so a layout can be compared with its theoretical volume either way.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import numpy as np

_local = threading.local()


@dataclass
class Call:
    kind: str  # all_reduce, all_gather, broadcast, reduce_scatter, all_to_all, shift, send_recv
    group_size: int
    nbytes: int  # this rank's input
    native: bool

    def cost(self, native: bool | None = None) -> float:
        """Bytes this rank sends for the call (ring algorithms); `native=True` costs it as the native op."""
        n, b = self.group_size, float(self.nbytes)
        if n <= 1:
            return 0.0
        nat = self.native if native is None else (native or self.native)
        ring_ar = 2.0 * (n - 1) / n
        if self.kind == "all_reduce":
            return ring_ar * b
        if self.kind == "all_gather":
            return (n - 1) * b if nat else ring_ar * n * b
        if self.kind == "broadcast":
            return b if nat else ring_ar * b
        if self.kind == "reduce_scatter":
            return (n - 1) / n * b if nat else ring_ar * b
        if self.kind == "all_to_all":
            return (n - 1) / n * b if nat else (n - 1) * b
        if self.kind in ("shift", "send_recv"):
            return b if nat or n == 2 else (n - 1) * b
        raise ValueError(f"unknown collective {self.kind!r}")


@dataclass
class Ledger:
    calls: list[Call] = field(default_factory=list)

    def totals(self) -> dict:
        by_kind: dict[str, dict] = {}
        for c in self.calls:
            k = by_kind.setdefault(c.kind, {"calls": 0, "input_bytes": 0, "issued": 0.0, "native": 0.0})
            k["calls"] += 1
            k["input_bytes"] += c.nbytes
            k["issued"] += c.cost()
            k["native"] += c.cost(native=True)
        return {"issued": sum(c.cost() for c in self.calls), "native": sum(c.cost(native=True) for c in self.calls),
                "calls": len(self.calls), "by_kind": by_kind}


def _nbytes(x) -> int:
    shape = tuple(x.shape)
    return int(np.prod(shape)) * int(x.itemsize) if shape else int(x.itemsize)


def _kinds():
    from mft.parallel import comm

    def native_of(cell, kind):
        if kind == "all_gather":
            return bool(getattr(cell.gather, "native", True)) if cell.gather is not None else True
        if kind in ("broadcast", "reduce_scatter", "all_to_all"):
            return bool(cell.native)
        if kind == "all_reduce":
            return not cell.gathered
        return False

    return {comm.AllReduce: "all_reduce", comm.HostAllReduce: "all_reduce", comm.AllGather: "all_gather", comm.Broadcast: "broadcast",
            comm.ReduceScatter: "reduce_scatter", comm.AllToAll: "all_to_all", comm.Shift: "shift",
            comm.SendRecv: "send_recv"}, native_of


@contextlib.contextmanager
def counting():
    """Records every collective called (from Python) inside the block; yields the Ledger."""
    classes, native_of = _kinds()
    ledger = Ledger()
    originals = {cls: cls.__call__ for cls in classes}
    own = {cls: "__call__" in cls.__dict__ for cls in classes}  # restored exactly as found

    def wrap(cls, kind):
        original = originals[cls]

        def __call__(self, *args, **kwargs):
            depth = getattr(_local, "depth", 0)
            if depth == 0 and getattr(self, "size", 1) > 1:
                call_kind = kind
                if kind == "all_reduce" and self.gathered:  # max/min built from an all-gather
                    call_kind = "all_gather"
                    native = bool(self.gather.native)
                else:
                    native = native_of(self, kind)
                ledger.calls.append(Call(call_kind, int(self.size), _nbytes(args[0]), native))
            _local.depth = depth + 1
            try:
                return original(self, *args, **kwargs)
            finally:
                _local.depth = depth

        return __call__

    for cls, kind in classes.items():
        cls.__call__ = wrap(cls, kind)
    try:
        yield ledger
    finally:
        for cls, fn in originals.items():
            if own[cls]:
                cls.__call__ = fn
            else:
                del cls.__call__
