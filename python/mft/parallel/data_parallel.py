"""Data parallelism: gradients averaged over the dp group inside the compiled step.

`GradAllReduce` is the `grad_reducer` Cell that `TrainStep(..., grad_reducer=)`
applies to the gradient tuple right after the backward, inside the same
graph. Gradients travel in flat fp32 buckets of at least `BUCKET_ELEMENTS`
(25 MiB, PyTorch DDP's default; concat -> one AllReduce per bucket -> split
back), filled in reverse parameter order: the backward produces the last
layers' gradients first, so a bucket's all-reduce depends only on gradients
that are ready before the rest of the backward has run, and a runtime that
runs independent kernels concurrently (Ascend/GPU streams) can overlap it
with the backward. On CPU it does not: MindSpore's CPU collective is a ring
all-reduce over its TCP RPC that keeps the (one) runtime thread busy, and
the demo model's step (3.95M parameters) measured the same CPU time with
one flat 15.8 MB buffer as with 0.25-4 MiB buckets (benches/README.md), so
a model of that size travels in one buffer. `MFT_DP_BUCKET_MB`
(environment) sets another bucket size (the dp parity test uses tiny
buckets so that its small model spans several).

The mean of the per-rank mean losses equals the single-process mean loss
over the global batch when every rank holds the same number of tokens (the
sharding in `EpochSamples.rank_batch` gives every rank micro_batch/dp full
sequences), so the averaged gradients equal the single-process gradients
up to float summation order.
"""

from __future__ import annotations

import os

import numpy as np

import mindspore as ms
from mindspore import nn, ops

from mft.errors import MftError
from mft.parallel.comm import AllReduce
from mft.parallel.groups import Group


BUCKET_ELEMENTS = 25 * 262144  # fp32 elements per all-reduce bucket (25 MiB); a larger tensor is a bucket of its own


def bucket_elements() -> int:
    """fp32 elements per gradient bucket: MFT_DP_BUCKET_MB (MiB, > 0) if set, else BUCKET_ELEMENTS."""
    raw = os.environ.get("MFT_DP_BUCKET_MB", "").strip()
    if not raw:
        return BUCKET_ELEMENTS
    try:
        mb = float(raw)
    except ValueError:
        mb = 0.0
    if not mb > 0:
        raise MftError(f"MFT_DP_BUCKET_MB={raw!r}: expected a positive number of MiB per gradient all-reduce bucket")
    return max(1, int(mb * 262144))  # 262144 fp32 = 1 MiB


def buckets(sizes, bucket: int = BUCKET_ELEMENTS) -> list[list[int]]:
    """Parameter indices in reverse order, cut into runs of at least `bucket` elements (the last run may be
    smaller). Every index appears exactly once."""
    out, cur, n = [], [], 0
    for i in reversed(range(len(sizes))):
        cur.append(i)
        n += int(sizes[i])
        if n >= bucket:
            out.append(cur)
            cur, n = [], 0
    if cur:
        out.append(cur)
    return out


class GradAllReduce(nn.Cell):
    """grads tuple -> the same tuple averaged over `group` (identity for a group of size 1), bucketed."""

    def __init__(self, group: Group, params, bucket: int | None = None):
        """`bucket`: fp32 elements per all-reduce (default `bucket_elements()`)."""
        super().__init__(auto_prefix=False)
        self.size = group.size
        self.all_reduce = AllReduce(group, "mean")
        self.shapes = tuple(tuple(p.shape) for p in params)
        self.dtypes = tuple(p.dtype for p in params)
        self.sizes = tuple(int(np.prod(s)) if s else 1 for s in self.shapes)
        self.buckets = tuple(tuple(b) for b in buckets(self.sizes, bucket or bucket_elements()))
        # where parameter i lands in the bucket-ordered list of pieces
        order = [i for b in self.buckets for i in b]
        self.position = tuple(order.index(i) for i in range(len(self.sizes)))
        self.bucket_offsets = tuple(tuple(int(o) for o in np.concatenate([[0], np.cumsum([self.sizes[i] for i in b])[:-1]]))
                                    for b in self.buckets)

    def construct(self, grads):
        if self.size == 1:
            return grads
        pieces = ()
        for b in range(len(self.buckets)):
            members = self.buckets[b]
            flat = self.all_reduce(ops.concat([grads[i].astype(ms.float32).reshape(-1) for i in members]))
            offsets = self.bucket_offsets[b]
            for j in range(len(members)):
                i = members[j]
                piece = flat[offsets[j]:offsets[j] + self.sizes[i]]
                pieces = pieces + (piece.reshape(self.shapes[i]).astype(self.dtypes[i]),)
        out = ()
        for i in range(len(self.sizes)):
            out = out + (pieces[self.position[i]],)
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
