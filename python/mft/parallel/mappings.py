"""Megatron's conjugate communication pairs, as Cells with their own backward.

MindSpore differentiates ops.AllReduce into another AllReduce (a sum over
ranks), which is wrong for tensor parallelism: a replicated activation that
enters a column-parallel layer must see its gradient summed once, a partial
sum leaving a row-parallel layer must be summed once forward and not again
backward. Each Cell here states its forward and backward (the `bprop`), so
`ms.grad` / `value_and_grad` use exactly that in PyNative and in graph mode.

| Cell | forward | backward |
|---|---|---|
| CopyToRegion | identity | all-reduce (sum) |
| ReduceFromRegion | all-reduce (sum) | identity |
| ScatterToRegion(dim) | this rank's chunk along dim | all-gather along dim |
| GatherFromRegion(dim) | all-gather along dim | this rank's chunk along dim |
| ReduceScatterToRegion(dim) | reduce-scatter along dim (sequence parallel) | all-gather along dim |
| GatherFromSequenceRegion(dim) | all-gather along dim (sequence parallel) | reduce-scatter along dim |

All of them are the identity (forward and backward) for a group of size 1.
"""

from __future__ import annotations

from mindspore import nn, ops

from mft.parallel.comm import AllGather, AllReduce, ReduceScatter
from mft.parallel.groups import Group


class _Mapping(nn.Cell):
    def __init__(self, group: Group, dim: int = 0):
        super().__init__()
        self.size = group.size
        self.rank = group.rank
        self.dim = dim
        self.split = ops.Split(dim, self.size)  # a primitive: ops.chunk does not compile in a bprop cell

    def _chunk(self, x):
        return self.split(x)[self.rank]


class CopyToRegion(_Mapping):
    """Identity forward; gradients summed over the group backward (Megatron's f)."""

    def __init__(self, group: Group):
        super().__init__(group)
        self.all_reduce = AllReduce(group, "sum")

    def construct(self, x):
        return x

    def bprop(self, x, out, dout):
        return (self.all_reduce(dout),)


class ReduceFromRegion(_Mapping):
    """Sum over the group forward; identity backward (Megatron's g)."""

    def __init__(self, group: Group):
        super().__init__(group)
        self.all_reduce = AllReduce(group, "sum")

    def construct(self, x):
        return self.all_reduce(x)

    def bprop(self, x, out, dout):
        return (dout,)


class ScatterToRegion(_Mapping):
    """This rank's chunk along `dim` forward; all-gather of the gradient backward."""

    def __init__(self, group: Group, dim: int = -1):
        super().__init__(group, dim)
        self.all_gather = AllGather(group, dim)

    def construct(self, x):
        if self.size == 1:
            return x
        return self._chunk(x)

    def bprop(self, x, out, dout):
        return (self.all_gather(dout),)


class GatherFromRegion(_Mapping):
    """All-gather along `dim` forward; this rank's chunk of the gradient backward."""

    def __init__(self, group: Group, dim: int = -1):
        super().__init__(group, dim)
        self.all_gather = AllGather(group, dim)

    def construct(self, x):
        return self.all_gather(x)

    def bprop(self, x, out, dout):
        if self.size == 1:
            return (dout,)
        return (self._chunk(dout),)


class ReduceScatterToRegion(_Mapping):
    """Sequence parallel: reduce-scatter along `dim` forward; all-gather backward."""

    def __init__(self, group: Group, dim: int = 0):
        super().__init__(group, dim)
        self.reduce_scatter = ReduceScatter(group, dim, "sum")
        self.all_gather = AllGather(group, dim)

    def construct(self, x):
        return self.reduce_scatter(x)

    def bprop(self, x, out, dout):
        return (self.all_gather(dout),)


class GatherFromSequenceRegion(_Mapping):
    """Sequence parallel: all-gather along `dim` forward; reduce-scatter (sum) of the gradient backward."""

    def __init__(self, group: Group, dim: int = 0):
        super().__init__(group, dim)
        self.all_gather = AllGather(group, dim)
        self.reduce_scatter = ReduceScatter(group, dim, "sum")

    def construct(self, x):
        return self.all_gather(x)

    def bprop(self, x, out, dout):
        return (self.reduce_scatter(dout),)
