"""Next-token selection on fp32 logits (numpy): greedy, temperature, top-k, top-p.

Processing order and tie rules follow Hugging Face's logits warpers
(temperature, then top-k keeping every token tied with the k-th, then top-p
removing tokens whose ascending cumulative probability is <= 1 - top_p,
always keeping the best one). Sampling draws one uniform number per row
from a seeded numpy Generator, so the same seed gives the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mft.errors import MftError


@dataclass
class SamplingParams:
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off

    def __post_init__(self):
        if self.temperature < 0:
            raise MftError(f"temperature={self.temperature} must be >= 0")
        if self.top_k < 0:
            raise MftError(f"top_k={self.top_k} must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise MftError(f"top_p={self.top_p} must be in (0, 1]")
        if self.temperature == 0:
            self.do_sample = False  # temperature 0 means greedy


def greedy(logits: np.ndarray) -> np.ndarray:
    return np.argmax(logits, axis=-1).astype(np.int64)


def warp(logits: np.ndarray, params: SamplingParams) -> np.ndarray:
    """Masked, temperature-scaled logits (B, V); removed tokens are -inf."""
    out = logits.astype(np.float32) / np.float32(params.temperature)
    if params.top_k > 0 and params.top_k < out.shape[-1]:
        kth = np.partition(out, -params.top_k, axis=-1)[:, -params.top_k][:, None]
        out = np.where(out < kth, -np.inf, out)
    if params.top_p < 1.0:
        order = np.argsort(out, axis=-1, kind="stable")  # ascending
        sorted_logits = np.take_along_axis(out, order, axis=-1)
        cum = np.cumsum(softmax(sorted_logits), axis=-1)
        remove_sorted = cum <= (1.0 - params.top_p)
        remove_sorted[:, -1] = False  # keep at least the most likely token
        remove = np.zeros_like(remove_sorted)
        np.put_along_axis(remove, order, remove_sorted, axis=-1)
        out = np.where(remove, -np.inf, out)
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sample(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> np.ndarray:
    """One token id per row of `logits` (B, V)."""
    if not params.do_sample:
        return greedy(logits)
    probs = softmax(warp(logits, params))
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random(probs.shape[0])[:, None] * cdf[:, -1:]
    ids = (cdf <= u).sum(axis=-1)  # first index whose cdf exceeds u
    return np.minimum(ids, probs.shape[-1] - 1).astype(np.int64)
