"""An endless, resumable sample stream: one GPTDataset per epoch.

A GPTDataset's order depends on its `num_samples`, so sizing it by
`train.steps` would reshuffle everything when a resumed run raises the step
count. Here epoch e is its own GPTDataset over exactly one pass of the corpus
(seed + e), so global sample i depends only on (data, seq_len, seed, i):
runs of any length see the same prefix, and resume is exact.
"""

from __future__ import annotations

import numpy as np

from mft.data.gpt_dataset import GPTDataset
from mft.data.indexed import IndexedDataset
from mft.errors import MftError


class EpochSamples:
    """The trainer's endless sample stream: epoch e is a `GPTDataset` over the same documents seeded
    `seed + e`, so sample i depends only on the data, seq_len, seed and i (resume-safe)."""
    def __init__(self, indexed: IndexedDataset, seq_len: int, seed: int, documents=None, name: str = ""):
        """`documents`: only these document ids (a data.split range); None = all. `name` labels errors."""
        lengths = np.asarray(indexed.sequence_lengths, dtype=np.int64)
        tokens = int(lengths.sum() if documents is None else lengths[np.asarray(documents, dtype=np.int64)].sum())
        self.samples_per_epoch = (tokens - 1) // seq_len
        if self.samples_per_epoch < 1:
            what = f" ({name}: {len(documents)} documents)" if documents is not None else ""
            raise MftError(f"{indexed.prefix}{what}: {tokens} tokens cannot fill one sample of seq_len {seq_len} + 1")
        self.documents = documents
        self.indexed = indexed
        self.seq_len = seq_len
        self.seed = seed
        self._epoch = -1
        self._dataset: GPTDataset | None = None

    def _epoch_dataset(self, epoch: int) -> GPTDataset:
        if epoch != self._epoch:
            self._dataset = GPTDataset(self.indexed, self.seq_len, self.samples_per_epoch, seed=self.seed + epoch,
                                       documents=self.documents)
            self._epoch = epoch
        return self._dataset

    def __getitem__(self, i: int) -> np.ndarray:
        epoch, local = divmod(int(i), self.samples_per_epoch)
        return self._epoch_dataset(epoch)[local]

    def batch(self, start: int, count: int) -> np.ndarray:
        """Samples start .. start + count, stacked: int32 (count, seq_len + 1)."""
        return np.stack([self[i] for i in range(start, start + count)])

    def rank_batch(self, start: int, accum: int, micro_batch: int, dp_rank: int = 0, dp: int = 1) -> np.ndarray:
        """One data-parallel rank's share of a global batch: int32 (accum, micro_batch // dp, seq_len + 1).

        The global batch is samples start .. start + accum * micro_batch, micro-step
        a taking the a-th run of micro_batch of them; rank d reads only the d-th
        1/dp of each micro-batch. So the global batch and its order are the same
        for every dp, and the dp ranks together read each sample exactly once.
        """
        if dp < 1 or not 0 <= dp_rank < dp:
            raise MftError(f"bad data-parallel rank {dp_rank} of {dp}")
        if micro_batch % dp:
            raise MftError(f"train.micro_batch_size={micro_batch} (the global micro-batch) must be divisible by parallel.dp={dp}")
        per_rank = micro_batch // dp
        rows = [
            self[start + a * micro_batch + dp_rank * per_rank + j] for a in range(accum) for j in range(per_rank)
        ]  # fmt: skip
        return np.stack(rows).reshape(accum, per_rank, -1)
