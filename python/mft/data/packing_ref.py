"""Pure-Python references for the Rust builders in `mft._native` (parity-tested).

`build_sample_idx_ref`: Megatron's sample index. Entry k is the (position in
doc_idx, token offset) where sample k starts; sample k runs through entry
k+1's token inclusive, so it holds seq_len + 1 tokens and shares its last
token with the next sample's first.

`best_fit_decreasing_ref`: longest sample first (ties: lower index), into the
open bin with the least room that still fits (ties: earliest bin), else a new bin.

`pack_rows_ref`: the bins laid out as (rows, seq_len) input / position /
segment ids with numpy slice assignments, one sample at a time.
"""

from __future__ import annotations

import numpy as np

from mft.errors import MftError


def build_sample_idx_ref(sizes: np.ndarray, doc_idx: np.ndarray, seq_len: int, num_samples: int) -> np.ndarray:
    """Megatron's sample index, (num_samples + 1, 2) of (position in doc_idx, token offset); see the module doc."""
    if seq_len <= 0:
        raise MftError("seq_len must be positive")
    sizes = [int(s) for s in sizes]
    doc_idx = [int(d) for d in doc_idx]
    for pos, d in enumerate(doc_idx):
        if not 0 <= d < len(sizes):
            raise MftError(f"doc_idx[{pos}] = {d} is not a document id in [0, {len(sizes)})")
    out = np.zeros((num_samples + 1, 2), dtype=np.int64)
    pos, offset = 0, 0
    for sample in range(num_samples):
        remaining = seq_len + 1
        while True:
            doc_len = sizes[doc_idx[pos]] - offset
            remaining -= doc_len
            if remaining <= 0:
                offset += remaining + doc_len - 1
                break
            if pos + 1 == len(doc_idx):
                raise MftError(f"documents run out while building sample {sample} of {num_samples} (seq_len {seq_len})")
            pos += 1
            offset = 0
        out[sample + 1] = (pos, offset)
    return out


def best_fit_decreasing_ref(lengths, seq_len: int) -> tuple[list[list[int]], list[list[int]]]:
    """(bins of sample indices, cumulative lengths per bin) by best-fit-decreasing into seq_len bins; see the module doc."""
    lengths = [int(x) for x in lengths]
    if seq_len <= 0:
        raise MftError("seq_len must be positive")
    for i, n in enumerate(lengths):
        if n > seq_len or n < 0:
            raise MftError(f"sample {i} has {n} tokens, more than seq_len {seq_len}" if n > 0 else f"sample {i} has negative length {n}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        best = None
        for b, r in enumerate(room):
            if r >= lengths[i] and (best is None or r < room[best]):
                best = b
        if best is None:
            bins.append([])
            room.append(seq_len)
            best = len(bins) - 1
        bins[best].append(i)
        room[best] -= lengths[i]
    actual = [np.cumsum([lengths[i] for i in b]).tolist() for b in bins]
    return bins, actual


def pack_rows_ref(samples: list, seq_len: int, pad_id: int = 0):
    """(input_ids, position_ids, segment_ids, bins, actual_seq_len) for `samples`."""
    lengths = [len(s) for s in samples]
    bins, actual = best_fit_decreasing_ref(lengths, seq_len)
    ids = np.full((len(bins), seq_len), pad_id, dtype=np.int32)
    pos = np.zeros((len(bins), seq_len), dtype=np.int32)
    seg = np.zeros((len(bins), seq_len), dtype=np.int32)
    for r, (bin_, ends) in enumerate(zip(bins, actual)):
        start = 0
        for k, (i, end) in enumerate(zip(bin_, ends)):
            ids[r, start:end] = samples[i]
            pos[r, start:end] = np.arange(end - start)
            seg[r, start:end] = k + 1
            start = end
    return ids, pos, seg, bins, actual
