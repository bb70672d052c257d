"""Pretraining samples (Rust sample index vs reference, GPTDataset contents,
resumable per-rank batches) and best-fit-decreasing fine-tuning packing."""

from __future__ import annotations

import numpy as np
import pytest

from mft import _native
from mft.data.gpt_dataset import GPTDataset, build_sample_idx
from mft.data.indexed import IndexedDataset, write_indexed_dataset
from mft.data.mindspore_dataset import make_train_dataset
from mft.data.packing import best_fit_decreasing, pack_samples
from mft.data.packing_ref import best_fit_decreasing_ref, build_sample_idx_ref, pack_rows_ref
from mft.errors import MftError

EOD = 0


@pytest.fixture()
def corpus(tmp_path):
    """60 documents of 1..40 tokens (ids >= 1), each ending with EOD."""
    rng = np.random.default_rng(1)
    docs = [np.append(rng.integers(1, 500, size=rng.integers(0, 40)), EOD) for _ in range(60)]
    prefix = str(tmp_path / "corpus")
    write_indexed_dataset(prefix, docs, vocab_size=500)
    return IndexedDataset(prefix), docs


@pytest.mark.parametrize("seed", range(6))
def test_sample_index_parity_with_reference(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 30, size=rng.integers(1, 50)).astype(np.int32)
    sizes[0] = max(sizes[0], 1)
    doc_idx = np.concatenate([rng.permutation(len(sizes)) for _ in range(3)]).astype(np.int32)
    seq_len = int(rng.integers(1, 40))
    num_samples = (int(sizes.sum()) * 3 - 1) // seq_len  # every token used: the tightest case
    native = _native.build_sample_idx(sizes, doc_idx, seq_len, num_samples)
    np.testing.assert_array_equal(native, build_sample_idx_ref(sizes, doc_idx, seq_len, num_samples))
    assert native.shape == (num_samples + 1, 2) and native.dtype == np.int64


def test_sample_index_refuses_too_few_tokens():
    sizes, doc_idx = np.array([3, 5], np.int32), np.array([0, 1], np.int32)
    for native in (True, False):
        with pytest.raises(MftError, match="run out while building sample 3"):
            build_sample_idx(sizes, doc_idx, 2, 4, native=native)
        with pytest.raises(MftError, match="doc_idx"):
            build_sample_idx(sizes, np.array([0, 2], np.int32), 2, 1, native=native)


def test_samples_are_consecutive_windows_of_the_shuffled_stream(corpus):
    indexed, docs = corpus
    seq_len, num_samples = 16, 90  # needs more than one epoch
    ds = GPTDataset(indexed, seq_len, num_samples, seed=7)
    assert ds.num_epochs > 1
    # Every epoch is a full permutation of the documents.
    for e in range(ds.num_epochs):
        assert sorted(ds.document_index[e * 60 : (e + 1) * 60]) == list(range(60))
    stream = np.concatenate([docs[d] for d in ds.document_index])
    seen = set()
    for i in range(num_samples):
        s = ds[i]
        assert s.dtype == np.int32 and s.shape == (seq_len + 1,)
        k = int(ds.shuffle_index[i])
        np.testing.assert_array_equal(s, stream[k * seq_len : k * seq_len + seq_len + 1])
        seen.add(k)
    assert seen == set(range(num_samples))
    assert (stream == EOD).sum() >= 60  # documents stay separated by EOD


def test_gpt_dataset_is_deterministic_by_seed_and_native_matches_reference(corpus):
    indexed, _ = corpus
    a = GPTDataset(indexed, 8, 50, seed=3)
    b = GPTDataset(indexed, 8, 50, seed=3)
    ref = GPTDataset(indexed, 8, 50, seed=3, native=False)
    other = GPTDataset(indexed, 8, 50, seed=4)
    np.testing.assert_array_equal(a.sample_index, ref.sample_index)
    batch = lambda ds: np.stack([ds[i] for i in range(len(ds))])
    np.testing.assert_array_equal(batch(a), batch(b))
    np.testing.assert_array_equal(batch(a), batch(ref))
    assert not np.array_equal(batch(a), batch(other))


def test_batches_shift_labels_and_resume_exactly(corpus):
    indexed, _ = corpus
    ds = GPTDataset(indexed, 12, 40, seed=0)
    full = list(make_train_dataset(ds, batch_size=4))
    assert len(full) == 10
    x, y = full[0]
    assert x.shape == y.shape == (4, 12) and x.dtype == y.dtype == np.int32
    np.testing.assert_array_equal(x, np.stack([ds[i][:-1] for i in range(4)]))
    np.testing.assert_array_equal(y, np.stack([ds[i][1:] for i in range(4)]))
    # A run that stopped after 3 steps resumes at step 3.
    resumed = make_train_dataset(ds, batch_size=4, consumed_samples=12)
    rest = list(resumed)
    assert len(rest) == 7
    for (a, b), (c, d) in zip(full[3:], rest):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    assert resumed.consumed_samples == 40


def test_data_parallel_ranks_split_each_global_batch(corpus):
    indexed, _ = corpus
    ds = GPTDataset(indexed, 12, 40, seed=0)
    single = list(make_train_dataset(ds, batch_size=4))
    ranks = [list(make_train_dataset(ds, batch_size=2, dp_rank=r, dp_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for step, (x, _) in enumerate(single):
        np.testing.assert_array_equal(np.concatenate([ranks[0][step][0], ranks[1][step][0]]), x)
    # Incomplete final global batch is dropped; bad layouts are user errors.
    assert len(make_train_dataset(ds, batch_size=3, dp_size=2)) == 6
    with pytest.raises(MftError):
        make_train_dataset(ds, batch_size=2, dp_rank=2, dp_size=2)
    with pytest.raises(MftError):
        make_train_dataset(ds, batch_size=2, consumed_samples=41)


@pytest.mark.parametrize("seed", range(5))
def test_best_fit_decreasing_parity_and_validity(seed):
    rng = np.random.default_rng(seed)
    seq_len = int(rng.integers(8, 200))
    lengths = rng.integers(0, seq_len + 1, size=int(rng.integers(0, 300)))
    packed = best_fit_decreasing(lengths, seq_len)
    bins, actual = best_fit_decreasing_ref(lengths, seq_len)
    assert packed.bins == bins
    assert packed.actual_seq_len == actual
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    for b, a in zip(bins, actual):
        assert a[-1] == sum(lengths[i] for i in b) <= seq_len
    # Any-fit packings leave at most one bin at most half full.
    assert sum(a[-1] * 2 <= seq_len for a in actual) <= 1


def test_best_fit_known_answer_and_errors():
    packed = best_fit_decreasing([5, 3, 4, 2, 6], 8)
    assert packed.bins == [[4, 3], [0, 1], [2]]
    assert packed.actual_seq_len == [[6, 8], [5, 8], [4]]
    with pytest.raises(MftError, match="sample 1 has 9 tokens"):
        best_fit_decreasing([1, 9], 8)
    with pytest.raises(MftError, match="sample 0 has 9 tokens"):
        best_fit_decreasing_ref([9], 8)


def test_pack_samples_rows():
    samples = [np.array([1, 2, 3]), np.array([4, 5]), np.array([6, 7, 8, 9])]
    rows, packed = pack_samples(samples, 6, pad_id=-1)
    assert rows.tolist() == [[6, 7, 8, 9, 4, 5], [1, 2, 3, -1, -1, -1]]
    assert packed.actual_seq_len == [[4, 6], [3]]
    assert packed.efficiency(6) == 9 / 12


def test_pack_rows_reset_positions_and_never_attend_across_samples():
    from mft.data.packing import pack_rows

    samples = [np.array([1, 2, 3]), np.array([4, 5]), np.array([6, 7, 8, 9])]
    packed = pack_rows(samples, 6, pad_id=0)
    assert packed.input_ids.tolist() == [[6, 7, 8, 9, 4, 5], [1, 2, 3, 0, 0, 0]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 0, 0]]
    assert packed.segment_ids.tolist() == [[1, 1, 1, 1, 2, 2], [1, 1, 1, 0, 0, 0]]
    assert packed.actual_seq_len == [[4, 6], [3]] and packed.padding_fraction == 3 / 12
    mask = packed.attention_mask(0)
    assert mask[4, 3] == False and mask[4, 4] and mask[5, 4] and mask[3, 0]  # noqa: E712
    assert not packed.attention_mask(1)[3:].any()  # padding attends to nothing


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pack_rows_parity_with_reference(seed):
    """The Rust row filler against numpy slice assignment, int32 and int64 and list input."""
    from mft.data.packing import pack_rows

    rng = np.random.default_rng(seed)
    seq_len = int(rng.integers(8, 64))
    lengths = rng.integers(0, seq_len + 1, size=int(rng.integers(1, 300)))
    dtype = [np.int32, np.int64, None][seed]
    samples = [rng.integers(0, 50_000, size=n) for n in lengths]
    samples = [s.tolist() for s in samples] if dtype is None else [s.astype(dtype) for s in samples]
    got = pack_rows(samples, seq_len, pad_id=7)
    ids, pos, seg, bins, actual = pack_rows_ref(samples, seq_len, pad_id=7)
    np.testing.assert_array_equal(got.input_ids, ids)
    np.testing.assert_array_equal(got.position_ids, pos)
    np.testing.assert_array_equal(got.segment_ids, seg)
    assert got.bins == bins and got.actual_seq_len == actual
    assert got.input_ids.dtype == np.int32 and got.input_ids.shape == (len(bins), seq_len)


def test_pack_rows_bad_input_is_named():
    from mft.data.packing import pack_rows

    with pytest.raises(MftError, match="sample 1 has 9 tokens, more than seq_len 8"):
        pack_rows([[1], list(range(9))], 8)
    with pytest.raises(MftError, match="does not fit int32"):
        pack_rows([np.array([2**40])], 8)
