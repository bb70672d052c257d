"""GraphCaller.of: one caller per cell, kept on the cell, shared by every user, recording the compiled phase."""

import copy

import numpy as np

import mindspore as ms
from mindspore import nn

from mft.graph_call import GraphCaller

ms.set_device("CPU")


class _Affine(nn.Cell):
    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(4, 3)

    def construct(self, x):
        return self.dense(x) * 2.0


def test_of_is_one_caller_per_cell_shared_by_every_user():
    cell, other = _Affine(), _Affine()
    caller = GraphCaller.of(cell)
    assert GraphCaller.of(cell) is caller and caller.cell is cell and caller.direct
    assert GraphCaller.of(other) is not caller
    assert caller not in cell.cells() and len(cell.trainable_params()) == 2  # not a sub-cell, no new Parameters
    x = ms.Tensor(np.arange(8, dtype=np.float32).reshape(2, 4))
    want = cell(x).asnumpy()  # PyNative
    first = GraphCaller.of(cell)(x).asnumpy()  # compiles in GRAPH_MODE, records the phase
    assert len(caller.phases) == 1
    again = GraphCaller.of(cell)(x).asnumpy()  # the recorded phase, straight on the executor
    np.testing.assert_allclose(first, want, rtol=1e-6)
    np.testing.assert_array_equal(again, first)
    assert ms.get_context("mode") == ms.PYNATIVE_MODE
    # a copy of the cell does not inherit the original's phases
    twin = copy.deepcopy(cell)
    assert GraphCaller.of(twin) is not caller and GraphCaller.of(twin).cell is twin
    assert not GraphCaller.of(twin).phases
