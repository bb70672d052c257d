"""Packed SFT rows: several whole conversations per training row, no attention across them.

`finetune.packing: true` replaces the Megatron windows (which run over the
concatenated conversations, so a conversation attends to the one before it)
with rows of `seq_len` tokens that each hold whole conversations:

- conversations are assigned to rows by best-fit-decreasing on their lengths
  (Rust, `mft.data.packing.best_fit_decreasing`), once for the training
  documents; every epoch visits the rows in a fresh order seeded by
  seed + epoch, so sample i depends only on (data, seq_len, seed, i) and
  resume is exact;
- a row is the model input as one (3, seq_len) int32 array: token ids,
  position ids (0 at every conversation start) and segment ids (1, 2, ... per
  conversation, 0 on the padding at the end); the decoder turns the segment
  ids into a block-diagonal causal mask (`packed_positions_and_mask`);
- labels: label t is token t+1 of the same conversation when that token is a
  target (PREFIX_mask, or every token without a mask), else -100; the last
  token of a conversation and the padding predict nothing.

A conversation longer than seq_len is an error naming it: cut them at
preprocess time (`mft data preprocess --format sft --max-length N --truncation left|split`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mft.errors import MftError

IGNORE_INDEX = -100  # mft.training.loss.IGNORE_INDEX (data does not import the trainer)


@dataclass
class PackedBatch:
    """inputs (accum, micro, 3, seq_len) int32: ids, positions, segments; labels (accum, micro, seq_len) int32."""

    inputs: np.ndarray
    labels: np.ndarray

    @property
    def real_tokens(self) -> int:
        return int((self.inputs[..., 2, :] > 0).sum())


class PackedSftSamples:
    """An endless, resumable stream of packed rows over `documents` (None = all) of `indexed`."""

    def __init__(self, indexed, seq_len: int, seed: int, mask=None, documents=None, name: str = "train"):
        self.indexed = indexed
        self.mask = mask
        self.seq_len = int(seq_len)
        self.seed = int(seed)
        docs = np.arange(len(indexed), dtype=np.int64) if documents is None else np.asarray(documents, dtype=np.int64)
        lengths = np.asarray(indexed.sequence_lengths, dtype=np.int64)[docs]
        if len(docs) == 0:
            raise MftError(f"{indexed.prefix} ({name}): no conversations to pack")
        too_long = np.nonzero(lengths > self.seq_len)[0]
        if len(too_long):
            d = int(docs[too_long[0]])
            raise MftError(f"{indexed.prefix}: conversation {d} has {int(lengths[too_long[0]])} tokens, more than data.seq_len="
                           f"{self.seq_len} ({len(too_long)} such); finetune.packing keeps conversations whole: raise "
                           "data.seq_len or cut them with `mft data preprocess --format sft --max-length N --truncation left|split`")
        from mft.data.packing import best_fit_decreasing

        packed = best_fit_decreasing(lengths, self.seq_len)
        self.rows = [[int(docs[i]) for i in b] for b in packed.bins]
        self.documents = documents
        self.samples_per_epoch = len(self.rows)
        self.real_tokens_per_epoch = int(lengths.sum())
        self._epoch = -1
        self._order = None

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.real_tokens_per_epoch / (self.samples_per_epoch * self.seq_len)

    def _row_index(self, i: int) -> int:
        epoch, local = divmod(int(i), self.samples_per_epoch)
        if epoch != self._epoch:
            self._order = np.random.default_rng(self.seed + epoch).permutation(self.samples_per_epoch)
            self._epoch = epoch
        return int(self._order[local])

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample i: (inputs (3, seq_len), labels (seq_len,)), both int32."""
        docs = self.rows[self._row_index(i)]
        masks = None if self.mask is None else [self.mask[d] for d in docs]
        return build_row([self.indexed[d] for d in docs], masks, self.seq_len)

    def rank_batch(self, start: int, accum: int, micro_batch: int, dp_rank: int = 0, dp: int = 1) -> PackedBatch:
        """As EpochSamples.rank_batch: rank d's 1/dp of each of `accum` micro-batches from sample `start`."""
        if dp < 1 or not 0 <= dp_rank < dp:
            raise MftError(f"bad data-parallel rank {dp_rank} of {dp}")
        if micro_batch % dp:
            raise MftError(f"train.micro_batch_size={micro_batch} (the global micro-batch) must be divisible by parallel.dp={dp}")
        per_rank = micro_batch // dp
        rows = [self.row(start + a * micro_batch + dp_rank * per_rank + j) for a in range(accum) for j in range(per_rank)]
        inputs = np.stack([r[0] for r in rows]).reshape(accum, per_rank, 3, self.seq_len)
        labels = np.stack([r[1] for r in rows]).reshape(accum, per_rank, self.seq_len)
        return PackedBatch(inputs, labels)


def build_row(conversations, masks, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """One packed row from whole conversations (token arrays) and their 0/1 target masks (None: all targets)."""
    inputs = np.zeros((3, seq_len), dtype=np.int32)
    labels = np.full(seq_len, IGNORE_INDEX, dtype=np.int32)
    at = 0
    for k, ids in enumerate(conversations):
        n = len(ids)
        if at + n > seq_len:
            raise MftError(f"packed row overflows: {at + n} tokens > seq_len {seq_len}")
        inputs[0, at:at + n] = ids
        inputs[1, at:at + n] = np.arange(n, dtype=np.int32)
        inputs[2, at:at + n] = k + 1
        target = np.asarray(ids[1:], dtype=np.int32)
        if masks is not None:
            target = np.where(np.asarray(masks[k][1:]) != 0, target, IGNORE_INDEX)
        labels[at:at + n - 1] = target
        at += n
    if at < seq_len:  # padding continues the positions from 0 like pack_rows; segment 0; nothing to predict
        inputs[1, at:] = np.arange(seq_len - at, dtype=np.int32)
    return inputs, labels
