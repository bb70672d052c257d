"""Data parallelism: gradients averaged over the dp group inside the compiled step.

`GradAllReduce` is the `grad_reducer` Cell that `TrainStep(..., grad_reducer=)`
applies to the gradient tuple right after the backward, inside the same
graph. All gradients travel in one flat fp32 buffer (concat -> one
AllReduce -> split back): on CPU one big message costs less than hundreds of
small ones. Overlapping buckets with the backward is not done.

The mean of the per-rank mean losses equals the single-process mean loss
over the global batch when every rank holds the same number of tokens (the
sharding in `EpochSamples.rank_batch` gives every rank micro_batch/dp full
sequences), so the averaged gradients equal the single-process gradients
up to float summation order.
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import nn, ops

from mft.parallel.comm import AllReduce
from mft.parallel.groups import Group


class GradAllReduce(nn.Cell):
    """grads tuple -> the same tuple averaged over `group` (identity for a group of size 1)."""

    def __init__(self, group: Group, params):
        super().__init__(auto_prefix=False)
        self.size = group.size
        self.all_reduce = AllReduce(group, "mean")
        self.shapes = tuple(tuple(p.shape) for p in params)
        self.dtypes = tuple(p.dtype for p in params)
        self.sizes = tuple(int(np.prod(s)) if s else 1 for s in self.shapes)
        self.offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(self.sizes)[:-1]]))

    def construct(self, grads):
        if self.size == 1:
            return grads
        flat = ops.concat([g.astype(ms.float32).reshape(-1) for g in grads])
        flat = self.all_reduce(flat)
        out = ()
        for i in range(len(self.sizes)):
            piece = flat[self.offsets[i]:self.offsets[i] + self.sizes[i]]
            out = out + (piece.reshape(self.shapes[i]).astype(self.dtypes[i]),)
        return out


class DataParallel:
    """What the trainer needs for dp: the grad reducer, this rank's data shard, the global mean of a scalar."""

    def __init__(self, group: Group):
        self.group = group
        self.size = group.size
        self.rank = group.rank
        self._mean = AllReduce(group, "mean")

    def grad_reducer(self, params) -> GradAllReduce | None:
        return GradAllReduce(self.group, params) if self.size > 1 else None

    def mean(self, value: float) -> float:
        """The mean of a per-rank float over the dp group (PyNative; a collective every dp rank must call)."""
        if self.size == 1:
            return value
        return float(self._mean(ms.Tensor(np.array([value], np.float32))).asnumpy()[0])
