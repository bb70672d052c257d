"""Fine-tuning packing: many variable-length samples into `seq_len` bins.

Best-fit-decreasing (the Rust `mft._native.best_fit_decreasing`; reference in
`packing_ref`). `actual_seq_len` per bin lists the cumulative end position
of each packed sample, the form varlen/flash attention takes to keep samples
from attending to each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mft.errors import MftError


@dataclass
class PackedBins:
    bins: list[list[int]]  # sample indices per bin, in packed order
    actual_seq_len: list[list[int]]  # per bin, cumulative sample end positions

    def __len__(self) -> int:
        return len(self.bins)

    def efficiency(self, seq_len: int) -> float:
        """Fraction of bin slots holding real tokens."""
        used = sum(a[-1] for a in self.actual_seq_len if a)
        return used / (seq_len * len(self.bins)) if self.bins else 1.0


def best_fit_decreasing(lengths, seq_len: int) -> PackedBins:
    from mft import _native

    arr = np.ascontiguousarray(lengths, dtype=np.int64).reshape(-1)
    try:
        bins, actual = _native.best_fit_decreasing(arr, int(seq_len))
    except (ValueError, OverflowError) as e:
        raise MftError(str(e)) from None
    return PackedBins(bins=bins, actual_seq_len=actual)


def pack_samples(samples: list[np.ndarray], seq_len: int, pad_id: int = 0) -> tuple[np.ndarray, PackedBins]:
    """Concatenates the samples of each bin into rows of `seq_len` tokens, padded with `pad_id`."""
    packed = best_fit_decreasing([len(s) for s in samples], seq_len)
    rows = np.full((len(packed), seq_len), pad_id, dtype=np.int32)
    for r, bin_ in enumerate(packed.bins):
        if bin_:
            row = np.concatenate([np.asarray(samples[i]) for i in bin_])
            rows[r, : len(row)] = row
    return rows, packed
