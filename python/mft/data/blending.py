"""Blending several datasets by weight (Megatron's BlendedDataset).

Sample i of the blend is sample `dataset_sample_index[i]` of dataset
`dataset_index[i]`, both built in Rust (`build_blending_indices`): each
prefix of the blend follows the weights as closely as whole samples allow.
Deterministic: a function of (weights, size); each source dataset keeps its
own seeded order.
"""

from __future__ import annotations

import math

import numpy as np

from mft.errors import MftError


def blending_indices(weights, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Megatron's blending indices (Rust): for each of `size` samples, which dataset (uint16) and its sample
    number there (int64), so that every prefix follows `weights` as closely as possible."""
    from mft import _native

    try:
        return _native.build_blending_indices([float(w) for w in weights], int(size))
    except (ValueError, OverflowError) as e:
        raise MftError(str(e)) from None


def samples_per_dataset(weights, size: int, margin: float = 0.005) -> list[int]:
    """How many samples to build per dataset for a blend of `size` (Megatron's 0.5% margin)."""
    total = float(sum(weights))
    return [int(math.ceil(w / total * size * (1 + margin))) + 1 for w in weights]


class BlendedDataset:
    """Samples drawn from several datasets in the proportions `weights` (Megatron's BlendedDataset).

    `datasets[d]` must hold at least the samples the blend takes from it (`samples_per_dataset`)."""
    def __init__(self, datasets: list, weights, size: int):
        if len(datasets) != len(weights):
            raise MftError(f"{len(datasets)} datasets but {len(weights)} weights")
        if size <= 0:
            raise MftError(f"blend size must be positive, got {size}")
        self.datasets = datasets
        self.size = int(size)
        self.dataset_index, self.dataset_sample_index = blending_indices(weights, self.size)
        need = np.bincount(self.dataset_index, minlength=len(datasets))
        for d, (ds, n) in enumerate(zip(datasets, need)):
            if n > len(ds):
                raise MftError(f"dataset {d} has {len(ds)} samples but the blend needs {n}; build it with samples_per_dataset()")

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int):
        if not 0 <= i < self.size:
            raise IndexError(f"sample {i} out of range for {self.size} samples")
        return self.datasets[int(self.dataset_index[i])][int(self.dataset_sample_index[i])]


def build_splits(prefixes, weights, split, seq_len: int, num_samples: dict, seed: int = 1234, cache_dir: str | None = None) -> dict:
    """Megatron's data path: every dataset is split by `split` ratios, each
    split gets a GPTDataset, and the splits are blended across datasets by
    `weights`. `num_samples`: {"train": n, "valid": n, "test": n} (0 or
    missing: that split is skipped). Returns {split name: dataset}."""
    from mft.data.gpt_dataset import GPTDataset
    from mft.data.indexed import IndexedDataset
    from mft.data.split import split_documents

    if len(prefixes) != len(weights):
        raise MftError(f"{len(prefixes)} dataset prefixes but {len(weights)} weights")
    indexed = [IndexedDataset(p) for p in prefixes]
    docs = [split_documents(len(ds), split) for ds in indexed]
    out = {}
    for name in ("train", "valid", "test"):
        n = int(num_samples.get(name, 0) or 0)
        if n <= 0:
            continue
        per = samples_per_dataset(weights, n) if len(indexed) > 1 else [n]
        parts = []
        for ds, d, k in zip(indexed, docs, per):
            if len(d[name]) == 0:
                raise MftError(f"{ds.prefix}: the {name} split {split!r} holds no documents")
            parts.append(GPTDataset(ds, seq_len, k, seed=seed, documents=d[name], cache_dir=cache_dir))
        out[name] = parts[0] if len(parts) == 1 else BlendedDataset(parts, weights, n)
    return out
