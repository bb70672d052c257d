"""Vocab-parallel cross-entropy: the causal-LM loss from logits split over the tp group by vocabulary.

Rank r holds logits for the vocabulary ids [r * L, (r + 1) * L) with
L = ceil(vocab / tp) (columns past the vocabulary, on the last rank, are
padding and excluded). No rank builds the full (tokens, vocab) logits:

    m      = max over ranks of the local row max       (all-reduce max, no gradient: any m gives the same loss)
    S      = sum over ranks of sum_j exp(z_j - m)      (ReduceFromRegion: all-reduce forward, identity backward)
    t      = z_label - m on the rank owning the label, 0 elsewhere, summed over ranks (ReduceFromRegion)
    loss   = mean over non-ignored tokens of log S - t

Every tp rank computes the same loss and differentiates its own copy with
seed 1; with identity backward through the sums, rank r's logit gradient is
exactly softmax - onehot restricted to its columns.
`reference_loss` is the same arithmetic in numpy with the ranks simulated.
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import nn, ops

from mft.parallel.comm import AllReduce
from mft.parallel.groups import Group
from mft.parallel.mappings import ReduceFromRegion
from mft.parallel.tensor_parallel import Shard

IGNORE_INDEX = -100
_NEG = float(np.finfo(np.float32).min)


class VocabParallelCrossEntropy(nn.Cell):
    """(local logits (B, S, ceil(V / tp)), labels (B, S)) -> mean token cross-entropy (IGNORE_INDEX excluded)."""

    def __init__(self, group: Group, vocab_size: int):
        super().__init__()
        shard = Shard(0, vocab_size, group.size)
        self.local = shard.local
        self.start = ms.Tensor(group.rank * shard.local, ms.int32)  # a tensor: the same graph on every rank
        valid = np.arange(group.rank * shard.local, (group.rank + 1) * shard.local) < vocab_size
        self.padded = shard.padded != vocab_size  # the same on every rank: one graph structure
        self.valid = ms.Tensor(valid.reshape(1, -1))
        self.max = AllReduce(group, "max")
        self.sum_exp = ReduceFromRegion(group)
        self.sum_target = ReduceFromRegion(group)

    def construct(self, logits, labels):
        z = logits.reshape(-1, self.local).astype(ms.float32)
        if self.padded:
            z = ops.select(self.valid.broadcast_to(z.shape), z, ops.full_like(z, _NEG))
        m = ops.stop_gradient(self.max(z.max(axis=-1, keepdims=True)))
        z = z - m
        s = self.sum_exp(ops.exp(z).sum(-1))
        flat = labels.reshape(-1).astype(ms.int32)
        mask = (flat != IGNORE_INDEX).astype(ms.float32)
        local = flat - self.start
        inside = ops.logical_and(local >= 0, local < self.local)
        index = ops.select(inside, local, ops.zeros_like(local)).reshape(-1, 1)
        target = ops.gather_elements(z, 1, index).reshape(-1) * inside.astype(ms.float32)
        target = self.sum_target(target)
        per_token = ops.log(s) - target
        return (per_token * mask).sum() / ops.maximum(mask.sum(), 1.0)


def reference_loss(logit_pieces: list[np.ndarray], labels: np.ndarray, vocab_size: int) -> tuple[float, list[np.ndarray]]:
    """numpy, ranks simulated: (loss, each rank's gradient w.r.t. its logits) by the vocab-parallel arithmetic."""
    size = len(logit_pieces)
    shard = Shard(0, vocab_size, size)
    flat = labels.reshape(-1)
    keep = (flat != IGNORE_INDEX).astype(np.float64)
    zs = []
    for r, piece in enumerate(logit_pieces):
        z = piece.reshape(-1, shard.local).astype(np.float64)
        cols = np.arange(r * shard.local, (r + 1) * shard.local)
        zs.append(np.where(cols[None, :] < vocab_size, z, -np.inf))
    m = np.max([z.max(-1) for z in zs], axis=0)[:, None]
    s = sum(np.exp(z - m).sum(-1) for z in zs)
    target = np.zeros(flat.shape)
    for r, z in enumerate(zs):
        local = flat - r * shard.local
        inside = (local >= 0) & (local < shard.local)
        target += np.where(inside, np.take_along_axis(z - m, np.where(inside, local, 0)[:, None], 1)[:, 0], 0.0)
    n = max(keep.sum(), 1.0)
    loss = float(((np.log(s) - target) * keep).sum() / n)
    grads = []
    for r, z in enumerate(zs):
        g = np.exp(z - m) / s[:, None]
        local = flat - r * shard.local
        inside = (local >= 0) & (local < shard.local)
        rows = np.nonzero(inside)[0]
        g[rows, local[rows]] -= 1.0
        grads.append((g * keep[:, None] / n).reshape(logit_pieces[r].shape))
    return loss, grads
