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
Everything is a function of (dataset, documents, seq_len, num_samples, seed).
`documents` restricts the dataset to a subset (a train/valid/test split, see
`split`). With `cache_dir` the three indices are saved as .npy files named by
a hash of those inputs (and the data files' sizes) and loaded next time.
The sample index is int32 when its values fit, else int64.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from mft.data.indexed import IndexedDataset
from mft.errors import MftError


def num_epochs_needed(tokens_per_epoch: int, seq_len: int, num_samples: int) -> int:
    """Smallest epoch count holding num_samples * seq_len + 1 tokens."""
    need = num_samples * seq_len + 1
    return max(1, -(-need // tokens_per_epoch))


def build_document_index(num_docs: int, num_epochs: int, rng: np.random.RandomState) -> np.ndarray:
    """Document order: one permutation of the documents per epoch, concatenated (int32)."""
    return np.concatenate([rng.permutation(num_docs) for _ in range(num_epochs)]).astype(np.int32)


class GPTDataset:
    """Megatron's GPTDataset: `num_samples` samples of `seq_len + 1` tokens cut across document
    boundaries of `indexed`, in a shuffled order fixed by `seed`.

    `documents` restricts it to those document ids; `cache_dir` keeps the index arrays as
    `.npy` files named by a hash of the inputs; `native=False` builds them with the numpy reference."""
    def __init__(
        self,
        indexed: IndexedDataset,
        seq_len: int,
        num_samples: int,
        seed: int = 1234,
        *,
        native: bool = True,
        documents=None,
        cache_dir: str | None = None,
    ):
        if seq_len <= 0 or num_samples <= 0:
            raise MftError(f"{indexed.prefix}: seq_len ({seq_len}) and num_samples ({num_samples}) must be positive")
        self.indexed = indexed
        self.seq_len = int(seq_len)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        all_sizes = np.ascontiguousarray(indexed.sequence_lengths, dtype=np.int32)
        if documents is None:
            docs = np.arange(len(all_sizes), dtype=np.int32)
        else:
            docs = np.ascontiguousarray(documents, dtype=np.int64).reshape(-1)
            if docs.size and (docs.min() < 0 or docs.max() >= len(all_sizes)):
                raise MftError(f"{indexed.prefix}: document ids must be in [0, {len(all_sizes)})")
            docs = docs.astype(np.int32)
        self.documents = docs
        tokens_per_epoch = int(all_sizes[docs].sum(dtype=np.int64))
        if tokens_per_epoch == 0:
            raise MftError(f"{indexed.prefix}: the dataset holds no tokens" + (" in the selected documents" if documents is not None else ""))
        self.num_epochs = num_epochs_needed(tokens_per_epoch, self.seq_len, self.num_samples)
        self.cache_paths = _cache_paths(cache_dir, indexed, docs, self.seq_len, self.num_samples, self.seed) if cache_dir else None
        self.loaded_from_cache = False
        if self.cache_paths and all(os.path.isfile(p) for p in self.cache_paths.values()):
            self._load_cache()
            return
        rng = np.random.RandomState(self.seed)
        self.document_index = docs[build_document_index(len(docs), self.num_epochs, rng)]
        sample_index = build_sample_idx(all_sizes, self.document_index, self.seq_len, self.num_samples, native=native)
        self.sample_index = _narrow(sample_index)
        self.shuffle_index = _narrow(rng.permutation(self.num_samples).astype(np.int64))
        if self.cache_paths:
            self._save_cache()

    def _load_cache(self) -> None:
        try:
            self.document_index = np.load(self.cache_paths["doc_idx"], mmap_mode="r")
            self.sample_index = np.load(self.cache_paths["sample_idx"], mmap_mode="r")
            self.shuffle_index = np.load(self.cache_paths["shuffle_idx"], mmap_mode="r")
        except (OSError, ValueError) as e:
            raise MftError(f"{self.cache_paths['sample_idx']}: cannot read cached index ({e}); delete it to rebuild") from None
        if len(self.sample_index) != self.num_samples + 1 or len(self.shuffle_index) != self.num_samples:
            raise MftError(f"{self.cache_paths['sample_idx']}: cached index does not match num_samples {self.num_samples}; delete it")
        self.loaded_from_cache = True

    def _save_cache(self) -> None:
        os.makedirs(os.path.dirname(self.cache_paths["doc_idx"]), exist_ok=True)
        for key, arr in (("doc_idx", self.document_index), ("sample_idx", self.sample_index), ("shuffle_idx", self.shuffle_index)):
            final = self.cache_paths[key]
            tmp = f"{final}.tmp{os.getpid()}.npy"
            np.save(tmp, arr)
            os.replace(tmp, final)

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


def _narrow(a: np.ndarray) -> np.ndarray:
    """int32 when every value fits (half the memory and cache size), else int64."""
    if a.size == 0 or (a.min() >= np.iinfo(np.int32).min and a.max() <= np.iinfo(np.int32).max):
        return a.astype(np.int32)
    return a.astype(np.int64)


def _cache_paths(cache_dir: str, indexed: IndexedDataset, docs: np.ndarray, seq_len: int, num_samples: int, seed: int) -> dict:
    """File names derived from everything the indices depend on."""
    desc = {
        "version": 1,
        "prefix": os.path.abspath(indexed.prefix),
        "idx_bytes": os.path.getsize(indexed.idx_path),
        "bin_bytes": os.path.getsize(indexed.bin_path),
        "documents": hashlib.md5(np.ascontiguousarray(docs, dtype=np.int32).tobytes()).hexdigest(),
        "seq_len": seq_len,
        "num_samples": num_samples,
        "seed": seed,
    }
    digest = hashlib.md5(json.dumps(desc, sort_keys=True).encode()).hexdigest()
    base = os.path.join(cache_dir, f"{os.path.basename(indexed.prefix)}_{digest}")
    return {key: f"{base}_{key}.npy" for key in ("doc_idx", "sample_idx", "shuffle_idx")}


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
