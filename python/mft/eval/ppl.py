"""Perplexity of documents, each scored on its own with HF's sliding windows.

tokens = number of scored tokens (a document's first token is never scored),
mean_nll = their summed negative log-likelihood / tokens (natural log),
ppl = exp(mean_nll).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mft.errors import MftError
from mft.eval.windows import check_window_args, sliding_windows


def score_documents(scorer, documents: Sequence[Sequence[int]], max_length: int, stride: int) -> dict:
    """Scores token-id documents with `scorer` (a mft.eval.scorer.TokenScorer).

    Returns tokens, mean_nll, ppl, documents, scored_documents, windows and
    per-document `doc_nll` / `doc_tokens` lists (float64 sums, counts).
    """
    from mft.eval.scorer import Row

    check_window_args(max_length, stride)
    rows, owner = [], []
    for d, ids in enumerate(documents):
        ids = list(ids)
        for w in sliding_windows(len(ids), max_length, stride):
            rows.append(Row(ids[w.begin:w.end], w.first_scored - w.begin))
            owner.append(d)
    scores = scorer.score(rows)
    doc_nll = np.zeros(len(documents), dtype=np.float64)
    doc_tokens = np.zeros(len(documents), dtype=np.int64)
    for d, s in zip(owner, scores):
        doc_nll[d] -= s.logprobs.sum()
        doc_tokens[d] += len(s.logprobs)
    tokens = int(doc_tokens.sum())
    if tokens == 0:
        raise MftError("no token to score: every document has fewer than 2 tokens")
    mean_nll = float(doc_nll.sum() / tokens)
    return {
        "tokens": tokens,
        "mean_nll": mean_nll,
        "ppl": math.exp(mean_nll),
        "documents": len(documents),
        "scored_documents": int((doc_tokens > 0).sum()),
        "windows": len(rows),
        "doc_nll": doc_nll.tolist(),
        "doc_tokens": doc_tokens.tolist(),
    }
