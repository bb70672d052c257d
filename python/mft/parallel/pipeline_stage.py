"""One pipeline stage of a `DecoderForCausalLM`: its layers, plus the embedding (first stage) and the
final norm, LM head and loss (last stage).

`pipeline_config.stage_layers(num_layers, pp, pp_layers)` decides the split (`parallel.pp_layers`, or an even split
with the remainder on the earlier stages); `PipelineStage(model, stage, pp, bounds)` wraps the full
model's own sub-cells (the same Parameters, names unchanged: `model.layers.<i>.*`), so
initialisation, loading and saving keep working on the full model while the stage's optimizer and
gradients cover its own parameters only. With tied embeddings the last stage uses the same
`model.embed_tokens.weight` Parameter as its head: both ends hold a copy, and the train step sums its
two gradients over the pipeline group each step (`mft.parallel.pipeline`).

Every stage is called with the micro-batch's token ids (each rank reads the batch): rotary tables and
the causal / packed-document mask are rebuilt from them on every stage instead of being sent.
"""

from __future__ import annotations

from mindspore import nn

from mft.models.common.decoder import packed_positions_and_mask
from mft.parallel.pipeline_config import stage_layers  # noqa: F401  (re-exported)


class PipelineStage(nn.Cell):
    """Stage `stage` of `pp` over the full model's cells. Inputs: the hidden states from the previous
    stage (ignored on the first stage), the micro-batch's token ids, and labels (read on the last stage).
    Output: hidden states for the next stage, or the mean token loss on the last stage."""

    def __init__(self, model, stage: int, pp: int, bounds: tuple[int, int], loss_fn):
        super().__init__(auto_prefix=False)  # parameter names stay the model's own
        decoder = model.model
        self.first = stage == 0
        self.last = stage == pp - 1
        self.start, self.end = bounds
        self.tied = bool(model.tied)
        self.rotary_emb = decoder.rotary_emb
        self.layers = nn.CellList([decoder.layers[i] for i in range(self.start, self.end)], auto_prefix=False)
        self.num_layers = self.end - self.start
        self.decoder = [decoder]  # a list: not a sub-cell, so the other stages' parameters stay out
        self.head_model = [model]
        if self.first or (self.last and self.tied):
            self.embed_tokens = decoder.embed_tokens
        if self.last:
            self.norm = decoder.norm
            if not self.tied:
                self.lm_head = model.lm_head
        self.loss_fn = loss_fn

    def tied_embedding(self):
        """The embedding Parameter both ends hold (None when untied or on a middle stage)."""
        if self.tied and (self.first or self.last):
            return self.embed_tokens.weight
        return None

    def construct(self, hidden, input_ids, labels):
        decoder = self.decoder[0]
        if input_ids.ndim == 3:
            input_ids, positions, mask = packed_positions_and_mask(input_ids)
        else:
            _, positions, mask = decoder.positions_and_mask(input_ids)
        cos, sin = self.rotary_emb(positions)
        h = self.embed_tokens(input_ids) if self.first else hidden
        for i in range(self.num_layers):
            h = self.layers[i](h, cos, sin, mask)[0]
        if not self.last:
            return h
        h = self.norm(h)
        return self.loss_fn(self.head_model[0].logits_from_hidden(h), labels)
