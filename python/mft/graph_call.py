"""Calling a Cell's compiled graphs without Cell.__call__'s per-call Python.

A decode step of a small model runs its compiled graph in about as much time
as `Cell.__call__` spends in Python before it (checking the compile cache:
walking every sub-cell to set its phase, hashing the arguments, switching the
context to GRAPH_MODE and back; ~0.8 ms of a ~3 ms step on the serving
fixture, about 20% of the step's CPU time under load). `GraphCaller` makes the
first call with a given input signature the ordinary way (GRAPH_MODE, which
compiles), records the executor phase MindSpore compiled it under, and runs
later calls with the same signature straight on the graph executor.

The signature is the inputs' (shape, dtype) tuple; inputs must be Tensors
whose values never change the graph (what a bucketed decode step passes).
The direct path uses MindSpore's graph executor (`_cell_graph_executor`); if
this MindSpore lacks it, every call takes the ordinary path.

`GraphCaller.of(cell)` is the cell's own caller, made on first use and kept on
the cell, so every user of a cell (each `TrainStep` step cell, `mft serve`'s
decode forward) shares one set of recorded phases without a cache of its own.
"""

from __future__ import annotations

import weakref

import mindspore as ms

try:  # MindSpore 2.x: the executor Cell.__call__ ends in
    from mindspore.graph.api import _cell_graph_executor as _EXECUTOR
except ImportError:  # pragma: no cover - other MindSpore layouts
    try:
        from mindspore.common.api import _cell_graph_executor as _EXECUTOR
    except ImportError:
        _EXECUTOR = None


_ATTR = "_mft_graph_caller"  # where GraphCaller.of keeps a cell's caller


def _signature(inputs) -> tuple:
    return tuple((tuple(x.shape), x.dtype) for x in inputs)


class GraphCaller:
    """cell(*inputs) in GRAPH_MODE, one compiled graph per input signature, later calls direct."""

    def __init__(self, cell, direct: bool = True):
        self.cell = cell
        self.direct = bool(direct) and _EXECUTOR is not None
        self.phases: dict[tuple, str] = {}

    @classmethod
    def of(cls, cell) -> GraphCaller:
        """The caller kept on `cell` (direct), made on the first request; a copied cell gets its own."""
        owner, caller = vars(cell).get(_ATTR, (None, None))
        if owner is None or owner() is not cell:  # a deepcopy of the cell copies the caller, not this weak reference
            caller = cls(cell)
            # a plain attribute, not one of the Cell's parameters or sub-cells
            object.__setattr__(cell, _ATTR, (weakref.ref(cell), caller))
        return caller

    def __call__(self, *inputs):
        if self.direct:
            phase = self.phases.get(_signature(inputs))
            if phase is not None:
                return _EXECUTOR._graph_executor(inputs, phase)
        previous = ms.get_context("mode")
        ms.set_context(mode=ms.GRAPH_MODE)
        try:
            out = self.cell(*inputs)
        finally:
            ms.set_context(mode=previous)
        if self.direct:
            phase = getattr(self.cell, "compile_phase", None)
            if isinstance(phase, str) and _EXECUTOR.has_compiled(phase):
                self.phases[_signature(inputs)] = phase
        return out
