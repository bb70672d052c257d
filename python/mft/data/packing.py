"""Fine-tuning packing: many variable-length samples into `seq_len` bins.

Best-fit-decreasing (the Rust `mft._native.best_fit_decreasing`; reference in
`packing_ref`). `actual_seq_len` per bin lists the cumulative end position
of each packed sample, the form varlen/flash attention takes to keep samples
from attending to each other; `pack_rows` also gives position ids that
restart at 0 at every sample start, so RoPE sees each sample from position 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mft.errors import MftError


@dataclass
class PackedBins:
    """Samples packed into bins of at most seq_len tokens (best-fit decreasing)."""
    bins: list[list[int]]  # sample indices per bin, in packed order
    actual_seq_len: list[list[int]]  # per bin, cumulative sample end positions

    def __len__(self) -> int:
        return len(self.bins)

    def efficiency(self, seq_len: int) -> float:
        """Fraction of bin slots holding real tokens."""
        used = sum(a[-1] for a in self.actual_seq_len if a)
        return used / (seq_len * len(self.bins)) if self.bins else 1.0


def best_fit_decreasing(lengths, seq_len: int) -> PackedBins:
    """Packs samples of `lengths` tokens into as few bins of `seq_len` as best-fit decreasing finds (Rust).

    A sample longer than seq_len is an MftError."""
    from mft import _native

    arr = np.ascontiguousarray(lengths, dtype=np.int64).reshape(-1)
    try:
        bins, actual = _native.best_fit_decreasing(arr, int(seq_len))
    except (ValueError, OverflowError) as e:
        raise MftError(str(e)) from None
    return PackedBins(bins=bins, actual_seq_len=actual)


def pack_samples(samples: list, seq_len: int, pad_id: int = 0) -> tuple[np.ndarray, PackedBins]:
    """Concatenates the samples of each bin into rows of `seq_len` tokens, padded with `pad_id`."""
    rows = pack_rows(samples, seq_len, pad_id)
    return rows.input_ids, PackedBins(bins=rows.bins, actual_seq_len=rows.actual_seq_len)


@dataclass
class PackedRows:
    """Packed fine-tuning rows, all (rows, seq_len) int32 except actual_seq_len."""

    input_ids: np.ndarray
    position_ids: np.ndarray  # 0.. within each sample; padding continues from 0
    segment_ids: np.ndarray  # 1, 2, ... per sample in the row; 0 on padding
    actual_seq_len: list[list[int]]  # per row, cumulative sample end positions
    bins: list[list[int]]  # per row, the sample indices packed into it

    @property
    def padding_fraction(self) -> float:
        """Share of row positions that are padding (segment id 0)."""
        return float((self.segment_ids == 0).mean()) if self.segment_ids.size else 0.0

    def attention_mask(self, row: int) -> np.ndarray:
        """bool (seq_len, seq_len) causal mask that never crosses samples (for checks and small runs)."""
        seg = self.segment_ids[row]
        causal = np.tril(np.ones((len(seg), len(seg)), dtype=bool))
        return causal & (seg[:, None] == seg[None, :]) & (seg[:, None] > 0)


def pack_rows(samples: list, seq_len: int, pad_id: int = 0) -> PackedRows:
    """Best-fit-decreasing packing of `samples` (token id sequences, each at
    most seq_len long) into rows, with per-sample position and segment ids.
    The rows are filled in Rust from one flat copy of the samples."""
    from mft import _native

    lengths = np.fromiter((len(s) for s in samples), dtype=np.int64, count=len(samples))
    flat = np.concatenate(samples, axis=None) if len(samples) else np.empty(0, dtype=np.int64)
    if flat.dtype not in (np.int32, np.int64):  # int32 and int64 are read as they are
        flat = flat.astype(np.int64)
    try:
        ids, pos, seg, bins, actual = _native.pack_rows(flat, lengths, int(seq_len), int(pad_id))
    except (ValueError, OverflowError) as e:
        raise MftError(str(e)) from None
    return PackedRows(ids, pos, seg, actual, bins)
