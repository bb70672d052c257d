"""Expert-parallel gradients (parallel.ep): the reduction and the global norm when expert stacks are split.

Dense parameters are averaged over dp as with plain data parallelism; an expert's gradient already sums
the contributions of every token of its ep group (they came back through the all-to-all), so expert stacks
are summed over the expert-data-parallel group (`edp`: the ranks holding the same experts) and divided by dp.
The clip norm counts dense gradients once and sums the expert gradients' squares over the ep group (each
expert once). The pipeline step (mft.parallel.pipeline) takes the same reducer and sums the expert squares
the same way inside its apply cell.
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import nn, ops

from mft.parallel.comm import AllReduce
from mft.parallel.groups import Group


class ExpertGradReducer(nn.Cell):
    """Dense grads: one flat all-reduce mean over dp; expert stacks: one flat sum over edp, divided by dp."""

    def __init__(self, dp: Group, edp: Group, params, is_expert: tuple):
        super().__init__(auto_prefix=False)
        self.is_expert = is_expert
        self.shapes = tuple(tuple(p.shape) for p in params)
        self.dtypes = tuple(p.dtype for p in params)
        self.sizes = tuple(int(np.prod(s)) if s else 1 for s in self.shapes)
        self.dp_mean = AllReduce(dp, "mean")
        self.edp_sum = AllReduce(edp, "sum")
        self.dp_scale = 1.0 / dp.size
        self.dense_count = sum(1 for x in is_expert if not x)
        self.expert_count = sum(1 for x in is_expert if x)

    def _flat(self, grads, expert: bool):
        return ops.concat([grads[i].astype(ms.float32).reshape(-1) for i in range(len(grads)) if self.is_expert[i] == expert])

    def construct(self, grads):
        dense = self.dp_mean(self._flat(grads, False)) if self.dense_count else None
        experts = self.edp_sum(self._flat(grads, True)) * self.dp_scale if self.expert_count else None
        out = ()
        od = 0
        oe = 0
        for i in range(len(grads)):
            n = self.sizes[i]
            if self.is_expert[i]:
                piece = experts[oe:oe + n]
                oe += n
            else:
                piece = dense[od:od + n]
                od += n
            out = out + (piece.reshape(self.shapes[i]).astype(self.dtypes[i]),)
        return out

class ExpertGradNorm(nn.Cell):
    """Global L2 norm: dense grads (the same on every rank) once, expert grads' squares summed over ep."""

    def __init__(self, ep: Group, is_expert: tuple):
        super().__init__(auto_prefix=False)
        self.is_expert = is_expert
        self.ep_sum = AllReduce(ep, "sum")
        self.any_dense = not all(is_expert)

    def construct(self, grads):
        parts = [grads[i].astype(ms.float32).reshape(-1) for i in range(len(grads)) if self.is_expert[i]]
        total = self.ep_sum(ops.square(ops.concat(parts)).sum().reshape(1)).reshape(())
        if self.any_dense:
            dense = [grads[i].astype(ms.float32).reshape(-1) for i in range(len(grads)) if not self.is_expert[i]]
            total = total + ops.square(ops.concat(dense)).sum()
        return ops.sqrt(total)


def grad_reducer(model, params, dp: Group, edp: Group):
    """The train step's grad_reducer when the model has ep-split expert stacks, else None (use dp's)."""
    from mft.parallel.expert_parallel import expert_stacks

    stacks = expert_stacks(model)
    if not stacks:
        return None
    is_expert = tuple(id(p) in stacks for p in params)
    if dp.size == 1 and edp.size == 1:
        return None
    return ExpertGradReducer(dp, edp, params, is_expert)


def grad_norm(model, params):
    """A Cell for the global grad norm with ep-split stacks (None when there are none)."""
    from mft.parallel.expert_parallel import ep_group_of, expert_stacks

    stacks = expert_stacks(model)
    if not stacks or not any(id(p) in stacks for p in params):
        return None
    return ExpertGradNorm(ep_group_of(model), tuple(id(p) in stacks for p in params))
