"""Pretraining samples: fixed `seq_len + 1` token windows over shuffled documents.

Megatron GPTDataset semantics with one simplification noted below:
- document order: every epoch is a fresh seeded permutation of all
  documents (Megatron shuffles the concatenated epochs as one array and
  special-cases a short final epoch; per-epoch permutations keep each epoch
  a full pass over the corpus);
- sample index: the Rust `build_sample_idx` (reference in `packing_ref`), so
  samples run across document boundaries, each document already ending in
  EOD, and consecutive samples share one token (inputs = s[:-1], labels = s[1:]);
- shuffle index: a seeded permutation of the samples.
Everything is a function of (dataset, seq_len, num_samples, seed).
"""

from __future__ import annotations

import numpy as np

from mft.data.indexed import IndexedDataset
from mft.errors import MftError


def num_epochs_needed(tokens_per_epoch: int, seq_len: int, num_samples: int) -> int:
    """Smallest epoch count holding num_samples * seq_len + 1 tokens."""
    need = num_samples * seq_len + 1
    return max(1, -(-need // tokens_per_epoch))


def build_document_index(num_docs: int, num_epochs: int, rng: np.random.RandomState) -> np.ndarray:
    return np.concatenate([rng.permutation(num_docs) for _ in range(num_epochs)]).astype(np.int32)


class GPTDataset:
    def __init__(self, indexed: IndexedDataset, seq_len: int, num_samples: int, seed: int = 1234, *, native: bool = True):
        if seq_len <= 0 or num_samples <= 0:
            raise MftError(f"{indexed.prefix}: seq_len ({seq_len}) and num_samples ({num_samples}) must be positive")
        self.indexed = indexed
        self.seq_len = int(seq_len)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        sizes = np.ascontiguousarray(indexed.sequence_lengths, dtype=np.int32)
        tokens_per_epoch = int(sizes.sum(dtype=np.int64))
        if tokens_per_epoch == 0:
            raise MftError(f"{indexed.prefix}: the dataset holds no tokens")
        self.num_epochs = num_epochs_needed(tokens_per_epoch, self.seq_len, self.num_samples)
        rng = np.random.RandomState(self.seed)
        self.document_index = build_document_index(len(sizes), self.num_epochs, rng)
        self.sample_index = build_sample_idx(sizes, self.document_index, self.seq_len, self.num_samples, native=native)
        self.shuffle_index = rng.permutation(self.num_samples).astype(np.int64)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> np.ndarray:
        """Sample i: np.int32[seq_len + 1]."""
        if not 0 <= i < self.num_samples:
            raise IndexError(f"sample {i} out of range for {self.num_samples} samples")
        s = int(self.shuffle_index[i])
        (pos0, off0), (pos1, off1) = self.sample_index[s], self.sample_index[s + 1]
        docs = self.document_index
        if pos0 == pos1:
            out = self.indexed.get(int(docs[pos0]), int(off0), int(off1 - off0 + 1))
        else:
            parts = [self.indexed.get(int(docs[pos0]), int(off0))]
            parts += [self.indexed[int(docs[p])] for p in range(pos0 + 1, pos1)]
            parts.append(self.indexed.get(int(docs[pos1]), 0, int(off1 + 1)))
            out = np.concatenate(parts)
        return out.astype(np.int32)


def build_sample_idx(sizes: np.ndarray, doc_idx: np.ndarray, seq_len: int, num_samples: int, native: bool = True) -> np.ndarray:
    """int64[num_samples + 1, 2] of (doc_idx position, offset) sample starts."""
    if not native:
        from mft.data.packing_ref import build_sample_idx_ref

        return build_sample_idx_ref(sizes, doc_idx, seq_len, num_samples)
    from mft import _native

    try:
        return _native.build_sample_idx(
            np.ascontiguousarray(sizes, dtype=np.int32), np.ascontiguousarray(doc_idx, dtype=np.int32), int(seq_len), int(num_samples)
        )
    except ValueError as e:
        raise MftError(str(e)) from None
