"""Train/valid/test splits, weighted blending and the cached sample index,
on real .bin/.idx files."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mft.data.blending import BlendedDataset, blending_indices, build_splits
from mft.data.gpt_dataset import GPTDataset
from mft.data.indexed import IndexedDataset, write_indexed_dataset
from mft.data.split import split_ranges
from mft.errors import MftError


def make(tmp_path, name, n_docs, base):
    """Documents whose tokens name their dataset (base) and document."""
    rng = np.random.RandomState(n_docs)
    docs = [np.full(rng.randint(3, 30), base + d, dtype=np.int64) for d in range(n_docs)]
    prefix = str(tmp_path / name)
    write_indexed_dataset(prefix, docs, vocab_size=60000)
    return prefix


def test_split_ranges_follow_megatron_rounding():
    assert split_ranges(1000, "969,30,1") == [(0, 969), (969, 999), (999, 1000)]
    assert split_ranges(10, [0.5, 0.5]) == [(0, 5), (5, 10), (10, 10)]
    assert split_ranges(7, "1/1/1") == [(0, 3), (3, 5), (5, 7)]  # the rounding gap shifts every bound
    with pytest.raises(MftError, match="ratios"):
        split_ranges(10, "1,-1")


def test_split_datasets_only_read_their_documents(tmp_path):
    prefix = make(tmp_path, "a", 40, 0)
    splits = build_splits([prefix], [1.0], "80,20,0", seq_len=8, num_samples={"train": 30, "valid": 5})
    assert set(splits) == {"train", "valid"}
    train_tokens = np.unique(np.concatenate([splits["train"][i] for i in range(30)]))
    valid_tokens = np.unique(np.concatenate([splits["valid"][i] for i in range(5)]))
    assert train_tokens.max() < 32 and valid_tokens.min() >= 32  # docs 0..31 vs 32..39
    again = build_splits([prefix], [1.0], "80,20,0", seq_len=8, num_samples={"train": 30})
    assert all((again["train"][i] == splits["train"][i]).all() for i in range(30))


def test_blend_follows_weights_deterministically(tmp_path):
    a, b = make(tmp_path, "a", 30, 0), make(tmp_path, "b", 30, 1000)
    splits = build_splits([a, b], [0.7, 0.3], "1", seq_len=8, num_samples={"train": 200}, seed=5)
    blend = splits["train"]
    assert isinstance(blend, BlendedDataset) and len(blend) == 200
    from_b = sum(int(blend[i][0] >= 1000) for i in range(200))
    assert from_b == 60  # exactly 30% of 200: every prefix tracks the weights
    which, _ = blending_indices([0.7, 0.3], 200)
    assert (which == blend.dataset_index).all()
    again = build_splits([a, b], [0.7, 0.3], "1", seq_len=8, num_samples={"train": 200}, seed=5)["train"]
    assert all((again[i] == blend[i]).all() for i in range(0, 200, 7))
    with pytest.raises(MftError, match="needs"):
        BlendedDataset([blend.datasets[0], blend.datasets[1]], [0.01, 0.99], 10_000)


def test_sample_index_is_cached_under_a_name_from_its_inputs(tmp_path):
    prefix = make(tmp_path, "a", 50, 0)
    ds = IndexedDataset(prefix)
    cache = str(tmp_path / "cache")
    first = GPTDataset(ds, 16, 40, seed=3, cache_dir=cache)
    assert not first.loaded_from_cache and first.sample_index.dtype == np.int32
    files = sorted(os.listdir(cache))
    assert len(files) == 3 and all(f.startswith("a_") and f.endswith(".npy") for f in files)
    second = GPTDataset(ds, 16, 40, seed=3, cache_dir=cache)
    assert second.loaded_from_cache
    assert all((first[i] == second[i]).all() for i in range(40))
    other = GPTDataset(ds, 16, 40, seed=4, cache_dir=cache)  # another seed: another name
    assert not other.loaded_from_cache and len(os.listdir(cache)) == 6
    uncached = GPTDataset(ds, 16, 40, seed=3)
    assert all((uncached[i] == first[i]).all() for i in range(40))
