"""The MindSpore dataset adapter gives exactly TrainBatches' per-rank batches,
and resumes from a consumed-sample count."""

from __future__ import annotations

import numpy as np

from mft.data.gpt_dataset import GPTDataset
from mft.data.indexed import IndexedDataset, write_indexed_dataset
from mft.data.mindspore_dataset import make_mindspore_dataset, make_train_dataset


def test_mindspore_adapter_shards_and_resumes(tmp_path):
    rng = np.random.RandomState(0)
    docs = [rng.randint(0, 500, size=rng.randint(5, 40)) for _ in range(60)]
    write_indexed_dataset(str(tmp_path / "d"), docs, vocab_size=500)
    gpt = GPTDataset(IndexedDataset(str(tmp_path / "d")), seq_len=8, num_samples=48, seed=1)
    per_rank = []
    for rank in range(2):
        ms_ds = make_mindspore_dataset(gpt, batch_size=3, dp_rank=rank, dp_size=2)
        got = [(a, b) for a, b in ms_ds.create_tuple_iterator(output_numpy=True, num_epochs=1)]
        want = list(make_train_dataset(gpt, batch_size=3, dp_rank=rank, dp_size=2))
        assert len(got) == len(want) == 8
        for (a, b), (wa, wb) in zip(got, want):
            assert a.dtype == np.int32 and (a == wa).all() and (b == wb).all()
        per_rank.append(got)
    first_rows = {tuple(per_rank[r][0][0][i]) for r in range(2) for i in range(3)}
    assert len(first_rows) == 6  # the two ranks read different samples
    resumed = make_mindspore_dataset(gpt, batch_size=3, dp_rank=1, dp_size=2, consumed_samples=3 * 6)
    again = [a for a, _ in resumed.create_tuple_iterator(output_numpy=True, num_epochs=1)]
    assert len(again) == 5 and all((x == y[0]).all() for x, y in zip(again, per_rank[1][3:]))
