"""Validation loss and perplexity on held-out documents (`monitor.eval_every`).

`split_streams` turns `data.split` (Megatron's "train,valid,test" weights over
contiguous document ranges, `mft.data.split`) into the train stream, which
holds only the train range's documents, and the validation stream over the
valid range. The validation batches are fixed: samples 0 ..
eval_batches * micro_batch_size of the valid stream (seeded by run.seed), the
same at every evaluation, so val_loss moves only because the weights do.

The forward runs as a graph-mode Cell (`EvalLossCell`, compiled once, no
gradients), model + the train step's loss, over `monitor.eval_batches`
micro-batches; each data-parallel rank evaluates its 1/dp of every
micro-batch and the ranks average (every rank holds the same number of
tokens). val_ppl = exp(val_loss).
"""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from mft.data.epoch_samples import EpochSamples
from mft.data.split import split_documents
from mft.errors import MftError
from mft.training.train_step import CausalLMLoss, graph_mode


def split_streams(indexed, cfg) -> tuple[EpochSamples, EpochSamples | None]:
    """(train stream, validation stream or None). Without data.split: all documents train, no validation."""
    seq_len, seed = cfg.data.seq_len, cfg.run.seed
    if cfg.data.split is None:
        return EpochSamples(indexed, seq_len, seed=seed), None
    docs = split_documents(len(indexed), cfg.data.split)
    if len(docs["train"]) == 0:
        raise MftError(f"data.split={cfg.data.split!r}: {len(indexed)} documents leave none for training")
    train = EpochSamples(indexed, seq_len, seed=seed, documents=docs["train"], name="data.split train range")
    valid = None
    if cfg.monitor.eval_every > 0:
        if len(docs["valid"]) == 0:
            raise MftError(
                f"data.split={cfg.data.split!r}: the validation range of {len(indexed)} documents is empty; "
                "raise the second weight or use more documents"
            )
        valid = EpochSamples(indexed, seq_len, seed=seed, documents=docs["valid"], name="data.split valid range")
    return train, valid


class Validator:
    def __init__(self, model, valid: EpochSamples, eval_batches: int, micro_batch: int, dp, jit: bool = True):
        from mft.finetune.train_setup import inputs_labels
        from mft.finetune.vlm_batches import train_model

        # image-text data: a wrapper of its own that finds each validation batch's images by its ids
        model = train_model(model, valid)
        # fixed, loaded once; SFT data (a loss-masked stream): masked labels are -100
        self.batches = list(zip(*inputs_labels(valid.rank_batch(0, eval_batches, micro_batch, dp.rank, dp.size))))
        self.dp = dp
        self.jit = jit
        self.cell = EvalLossCell(CausalLMLoss(model))

    def run(self) -> dict:
        with graph_mode(self.jit):
            losses = [float(self.cell(ms.Tensor(x), ms.Tensor(y)).asnumpy()) for x, y in self.batches]
        loss = self.dp.mean(float(np.mean(losses)))
        return {"val_loss": loss, "val_ppl": math.exp(loss) if loss < 700 else float("inf")}


class EvalLossCell(nn.Cell):
    """Forward + LM loss, no gradients (MoE: the LM loss without aux losses)."""

    def __init__(self, loss_cell):
        super().__init__(auto_prefix=False)
        self.loss_cell = loss_cell
        self.moe = loss_cell.moe

    def construct(self, input_ids, labels):
        out = self.loss_cell(input_ids, labels)
        loss = out[1] if self.moe else out
        return ops.stop_gradient(loss)
