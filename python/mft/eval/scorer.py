"""Batched, compiled token scoring: log p(token | tokens before it in its row).

Rows of different lengths are right-padded to a bucket length (a power of
two from MIN_BUCKET, capped at the row limit) and the batch is padded to a
fixed number of rows, so each bucket compiles one `ms.jit` graph that is
reused. Right padding is safe for a causal model: a real position never
attends to a later (padded) one, and positions count from 0 in every row.
(MoE layers with a token capacity see the padded tokens too; with dropping
capacities a score can then depend on the batch.)

The graph returns, per position, the log-probability of the next token and
whether it was the argmax, so only (B, S) numbers leave the graph, never
(B, S, vocab) logits.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

import mindspore as ms
from mindspore import mint

MIN_BUCKET = 16


class Row(NamedTuple):
    ids: Sequence[int]  # the model's input tokens
    first_scored: int  # tokens ids[first_scored:] are scored (first_scored >= 1)


class RowScore(NamedTuple):
    logprobs: np.ndarray  # float64, one per scored token
    greedy: np.ndarray  # bool, scored token was the argmax


def bucket_length(n: int, limit: int) -> int:
    b = MIN_BUCKET
    while b < n:
        b *= 2
    return min(b, max(limit, n))


def _token_logprobs(logits, ids):
    """(B, S, V) logits, (B, S) ids -> log p(ids[:, 1:]) and argmax hits, (B, S-1) each."""
    logits = logits[:, :-1, :]
    target = ids[:, 1:]
    top = logits.max(axis=-1, keepdims=True)
    lse = mint.log(mint.exp(logits - top).sum(-1)) + top.squeeze(-1)
    picked = mint.gather(logits, 2, target.expand_dims(-1)).squeeze(-1)
    greedy = picked >= top.squeeze(-1)  # the target is (one of) the most likely tokens
    return picked - lse, greedy


def _compiled(model):
    fn = model.__dict__.get("_mft_jit_score")
    if fn is None:

        @ms.jit
        def fn(ids):
            return _token_logprobs(model(ids), ids)

        model.__dict__["_mft_jit_score"] = fn
    return fn


class TokenScorer:
    """score(rows) -> one RowScore per row, in order.

    `batch_size` rows per forward; `max_length` caps a row's length (longer
    rows are the caller's error). `jit=False` runs PyNative (reference path).
    """

    def __init__(self, model, batch_size: int = 8, max_length: int = 2048, pad_id: int = 0, jit: bool = True):
        self.model = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.pad_id = pad_id
        self.jit = jit
        self.forwards = 0
        self.buckets: set[tuple[int, int]] = set()

    def _run(self, ids: np.ndarray):
        t = ms.Tensor(ids, ms.int32)
        if self.jit:
            token, greedy = _compiled(self.model)(t)
        else:
            token, greedy = _token_logprobs(self.model(t), t)
        self.forwards += 1
        return token.asnumpy().astype(np.float64), greedy.asnumpy()

    def score(self, rows: Sequence[Row]) -> list[RowScore]:
        for i, r in enumerate(rows):
            if len(r.ids) > self.max_length:
                raise ValueError(f"row {i} has {len(r.ids)} tokens, more than max_length={self.max_length}")
            if not 1 <= r.first_scored <= len(r.ids):
                raise ValueError(f"row {i}: first_scored={r.first_scored} outside [1, {len(r.ids)}]")
        out: list[RowScore | None] = [None] * len(rows)
        by_bucket: dict[int, list[int]] = {}
        for i, r in enumerate(rows):
            if r.first_scored == len(r.ids):
                out[i] = RowScore(np.zeros(0), np.zeros(0, dtype=bool))
            else:
                by_bucket.setdefault(bucket_length(len(r.ids), self.max_length), []).append(i)
        for length in sorted(by_bucket):
            members = by_bucket[length]
            for k in range(0, len(members), self.batch_size):
                chunk = members[k:k + self.batch_size]
                ids = np.full((self.batch_size, length), self.pad_id, dtype=np.int32)
                for j, i in enumerate(chunk):
                    ids[j, :len(rows[i].ids)] = rows[i].ids
                if self.jit:
                    self.buckets.add((self.batch_size, length))
                token, greedy = self._run(ids)
                for j, i in enumerate(chunk):
                    r = rows[i]
                    # position p predicts token p + 1
                    sl = slice(r.first_scored - 1, len(r.ids) - 1)
                    out[i] = RowScore(token[j, sl], greedy[j, sl].astype(bool))
        return out  # type: ignore[return-value]
