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

On CPU, when every dp rank runs on this host, each bucket goes through
`comm.HostAllReduce` (shared memory) instead of MindSpore's all-reduce: on
the demo model 53 ms of CPU per step and rank for MindSpore's ring over
TCP against about a fifth of that (benches/README.md), which was most of
what dp=2 lost against dp=1. The buckets are chained (each waits for the
previous one's result), so every rank runs them in the same order whatever
the runtime's scheduling. `MFT_COMM_HOST=0` keeps MindSpore's all-reduce.

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
from mft.parallel.comm import AllReduce, HostAllReduce, host_token
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
        self.shapes = tuple(tuple(p.shape) for p in params)
        self.dtypes = tuple(p.dtype for p in params)
        self.sizes = tuple(int(np.prod(s)) if s else 1 for s in self.shapes)
        self.buckets = tuple(tuple(b) for b in buckets(self.sizes, bucket or bucket_elements()))
        # where parameter i lands in the bucket-ordered list of pieces
        order = [i for b in self.buckets for i in b]
        self.position = tuple(order.index(i) for i in range(len(self.sizes)))
        self.bucket_offsets = tuple(tuple(int(o) for o in np.concatenate([[0], np.cumsum([self.sizes[i] for i in b])[:-1]]))
                                    for b in self.buckets)
        # one segment per bucket: a header and a slot per rank (64-byte aligned) of the bucket's floats
        shm_bytes = sum(4096 + self.size * (-(-4 * sum(self.sizes[i] for i in b) // 64) * 64) for b in self.buckets)
        token = host_token(group, shm_bytes) if self.size > 1 else None  # a collective: every dp rank builds its reducer
        self.transport = "shared memory" if token is not None else "MindSpore all-reduce"
        if token is not None:
            self.reduces = nn.CellList([HostAllReduce(group, "mean", token, site) for site in range(len(self.buckets))])
        else:
            self.reduces = nn.CellList([AllReduce(group, "mean") for _ in self.buckets])

    def construct(self, grads):
        if self.size == 1:
            return grads
        pieces = ()
        previous = grads[0]
        for b in range(len(self.buckets)):
            members = self.buckets[b]
            flat = ops.concat([grads[i].astype(ms.float32).reshape(-1) for i in members])
            flat = self.reduces[b](ops.depend(flat, previous))  # after the previous bucket: the same order on every rank
            previous = flat
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
        if self.size == 1:
            return None
        reducer = GradAllReduce(self.group, params)
        import logging

        from mft.parallel.comm import process_groups

        logging.getLogger(f"mft.train.rank{process_groups().rank}.dp").info(
            "dp gradients: %d bucket(s) over %s", len(reducer.buckets), reducer.transport)  # into the rank's log
        return reducer

    def mean(self, value: float) -> float:
        """The mean of a per-rank float over the dp group (PyNative; a collective every dp rank must call)."""
        if self.size == 1:
            return value
        return float(self._mean(ms.Tensor(np.array([value], np.float32))).asnumpy()[0])
