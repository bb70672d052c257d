"""Per-rank training batches from a GPTDataset, resumable from a sample count.

Megatron's pretraining sampler order: global step k covers dataset samples
[consumed + k*G, consumed + (k+1)*G) with G = batch_size * dp_size, and data-
parallel rank r takes the r-th block of batch_size of them. Starting from
`consumed_samples` therefore continues exactly where a run that had consumed
that many samples stopped. An incomplete final global batch is dropped.

Batches are plain numpy (input_ids, labels), both int32 (B, S): measured on
this machine, wrapping the same generator in `mindspore.dataset.GeneratorDataset`
only added per-batch overhead, and a jitted train step takes numpy/Tensors alike.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from mft.errors import MftError


class TrainBatches:
    """Iterable of (input_ids, labels) batches for one data-parallel rank."""

    def __init__(self, dataset, batch_size: int, dp_rank: int = 0, dp_size: int = 1, consumed_samples: int = 0):
        if batch_size <= 0 or dp_size <= 0 or not 0 <= dp_rank < dp_size:
            raise MftError(f"bad data-parallel layout: batch_size={batch_size}, dp_rank={dp_rank}, dp_size={dp_size}")
        if not 0 <= consumed_samples <= len(dataset):
            raise MftError(f"consumed_samples={consumed_samples} is outside the dataset's {len(dataset)} samples")
        self.dataset = dataset
        self.batch_size = batch_size
        self.dp_rank = dp_rank
        self.dp_size = dp_size
        self.global_batch_size = batch_size * dp_size
        self.start_samples = consumed_samples
        # Samples consumed across all ranks after the last batch handed out.
        self.consumed_samples = consumed_samples

    def __len__(self) -> int:
        return (len(self.dataset) - self.start_samples) // self.global_batch_size

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        start = self.start_samples
        for step in range(len(self)):
            first = start + step * self.global_batch_size + self.dp_rank * self.batch_size
            rows = np.stack([self.dataset[i] for i in range(first, first + self.batch_size)])
            self.consumed_samples = start + (step + 1) * self.global_batch_size
            yield np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, 1:])


def make_train_dataset(gpt_dataset, batch_size: int, dp_rank: int = 0, dp_size: int = 1, consumed_samples: int = 0) -> TrainBatches:
    """Batches of (input_ids (B, S) int32, labels (B, S) int32) for this rank."""
    return TrainBatches(gpt_dataset, batch_size, dp_rank, dp_size, consumed_samples)


class _BatchSource:
    """Random-access view of a TrainBatches: item k is this rank's k-th batch."""

    def __init__(self, batches: TrainBatches):
        self.b = batches

    def __len__(self) -> int:
        return len(self.b)

    def __getitem__(self, k: int):
        b = self.b
        if not 0 <= k < len(b):
            raise IndexError(k)
        first = b.start_samples + k * b.global_batch_size + b.dp_rank * b.batch_size
        rows = np.stack([b.dataset[i] for i in range(first, first + b.batch_size)])
        return np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, 1:])


def make_mindspore_dataset(gpt_dataset, batch_size: int, dp_rank: int = 0, dp_size: int = 1, consumed_samples: int = 0,
                           num_workers: int = 1):
    """The same batches as `make_train_dataset`, as a `mindspore.dataset.GeneratorDataset`
    with columns (input_ids, labels), in a fixed order (shuffle=False: the order is
    the GPTDataset's seeded shuffle). Resuming: pass the run's consumed_samples."""
    import mindspore.dataset as ds

    source = _BatchSource(TrainBatches(gpt_dataset, batch_size, dp_rank, dp_size, consumed_samples))
    return ds.GeneratorDataset(source, column_names=["input_ids", "labels"], shuffle=False,
                               num_parallel_workers=num_workers, python_multiprocessing=False)
