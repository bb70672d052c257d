"""Data-parallel sharding: each rank reads its share of every global batch; the global batch is dp-independent."""

import numpy as np
import pytest

from mft.data.epoch_samples import EpochSamples
from mft.data.indexed import IndexedDataset, write_indexed_dataset
from mft.errors import MftError


@pytest.fixture()
def samples(tmp_path):
    rng = np.random.RandomState(0)
    docs = [rng.randint(0, 500, size=rng.randint(5, 40)) for _ in range(80)]
    write_indexed_dataset(str(tmp_path / "d"), docs, vocab_size=500)
    return EpochSamples(IndexedDataset(str(tmp_path / "d")), seq_len=8, seed=3)


@pytest.mark.parametrize("dp", [1, 2, 4])
def test_rank_shards_reassemble_the_global_batch(samples, dp):
    accum, micro = 3, 4
    start = 5 * samples.samples_per_epoch - 6  # crosses an epoch boundary
    whole = samples.batch(start, accum * micro).reshape(accum, micro, -1)
    shards = [samples.rank_batch(start, accum, micro, r, dp) for r in range(dp)]
    assert all(s.shape == (accum, micro // dp, 9) for s in shards)
    np.testing.assert_array_equal(np.concatenate(shards, axis=1), whole)


def test_ranks_read_disjoint_samples_and_dp1_is_the_plain_batch(samples):
    a, b = samples.rank_batch(0, 2, 4, 0, 2), samples.rank_batch(0, 2, 4, 1, 2)
    rows_a = {tuple(r) for r in a.reshape(-1, 9)}
    rows_b = {tuple(r) for r in b.reshape(-1, 9)}
    assert len(rows_a) == 4 and len(rows_b) == 4 and not rows_a & rows_b
    np.testing.assert_array_equal(samples.rank_batch(7, 2, 4), samples.batch(7, 8).reshape(2, 4, -1))


def test_micro_batch_must_divide_by_dp(samples):
    with pytest.raises(MftError, match="train.micro_batch_size=3 .* parallel.dp=2"):
        samples.rank_batch(0, 1, 3, 0, 2)
    with pytest.raises(MftError, match="bad data-parallel rank 2 of 2"):
        samples.rank_batch(0, 1, 4, 2, 2)
