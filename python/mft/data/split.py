"""Train/valid/test split of a dataset's documents by ratio, Megatron style:
contiguous document ranges, sizes rounded so they add up to the total.
Deterministic (no randomness: shuffling happens later, per split)."""

from __future__ import annotations

import numpy as np

from mft.errors import MftError

SPLIT_NAMES = ("train", "valid", "test")


def parse_split(split) -> list[float]:
    """"969,30,1" / "98/1/1" / [0.98, 0.01, 0.01] -> three normalized ratios."""
    if isinstance(split, str):
        parts = split.replace("/", ",").split(",")
        try:
            ratios = [float(p) for p in parts if p.strip()]
        except ValueError:
            raise MftError(f"split {split!r}: expected numbers like '969,30,1'") from None
    else:
        ratios = [float(r) for r in split]
    if not 1 <= len(ratios) <= 3:
        raise MftError(f"split {split!r}: give 1 to 3 ratios (train, valid, test)")
    if any(r < 0 or not np.isfinite(r) for r in ratios) or sum(ratios) <= 0:
        raise MftError(f"split {split!r}: ratios must be >= 0 and not all 0")
    ratios += [0.0] * (3 - len(ratios))
    total = sum(ratios)
    return [r / total for r in ratios]


def split_ranges(num_docs: int, split) -> list[tuple[int, int]]:
    """[start, end) document ranges for train, valid, test."""
    ratios = parse_split(split)
    bounds = [0]
    for r in ratios:
        bounds.append(bounds[-1] + int(round(r * num_docs)))
    excess = bounds[-1] - num_docs
    bounds = [bounds[0]] + [b - excess for b in bounds[1:]]
    bounds = [min(max(b, 0), num_docs) for b in bounds]
    return [(bounds[i], bounds[i + 1]) for i in range(3)]


def split_documents(num_docs: int, split) -> dict[str, np.ndarray]:
    """{"train": doc ids, "valid": ..., "test": ...} (int32 arrays)."""
    return {name: np.arange(a, b, dtype=np.int32) for name, (a, b) in zip(SPLIT_NAMES, split_ranges(num_docs, split))}
