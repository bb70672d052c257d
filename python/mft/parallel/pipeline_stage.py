"""One pipeline stage of a `DecoderForCausalLM`: its layers, plus the embedding (first stage) and the
final norm, LM head and loss (last stage).

`pipeline_config.stage_layers(num_layers, pp, pp_layers)` decides the split (`parallel.pp_layers`, or an even split
with the remainder on the earlier stages); `PipelineStage(model, stage, pp, bounds)` wraps the full
model's own sub-cells (the same Parameters, names unchanged: `model.layers.<i>.*`), so
initialisation, loading and saving keep working on the full model while the stage's optimizer and
gradients cover its own parameters only. With tied embeddings the last stage uses the same
`model.embed_tokens.weight` Parameter as its head, and with multi-token prediction (DeepSeek-V3's
`model.mtp`, run on the last stage after the head) to embed the shifted tokens: both ends hold a copy,
and the train step sums its two gradients over the pipeline group each step (`mft.parallel.pipeline`).

MoE stages (`moe`): every stage returns, besides its output, its own share of the auxiliary loss (the
balance and z losses of its MoE layers with the recipe's coefficients over the model's MoE layer count,
and on the last stage the weighted MTP loss) and its MoE layers' expert loads, so the aux loss is summed
over stages exactly as `DecoderForCausalLM.train_forward` sums it over layers; the stage moves its own
routers' correction biases (`update_expert_bias`, auxiliary-loss-free balancing).

Every stage is called with the micro-batch's token ids (each rank reads the batch): rotary tables and
the causal / packed-document mask are rebuilt from them on every stage instead of being sent.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

from mft.models.common.decoder import packed_positions_and_mask
from mft.models.common.mtp import mtp_loss
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
        # MoE (models with MoE layers anywhere; a stage may hold none of them and still returns the triple).
        cfg = model.config
        n_moe = int(getattr(model, "num_moe_layers", 0))
        self.moe = n_moe > 0
        self.moe_flags = tuple(bool(decoder.moe_flags[i]) for i in range(self.start, self.end))
        self.moe_offset = sum(1 for i in range(self.start) if decoder.moe_flags[i])  # first global MoE-layer index held
        self.num_moe_local = sum(self.moe_flags)
        self.balance_coef = float(cfg.moe_aux_loss_coef) / n_moe if self.moe else 0.0
        self.z_coef = float(cfg.moe_z_loss_coef) / n_moe if self.moe else 0.0
        moe_layers = [layer.mlp for layer, flag in zip(decoder.layers, decoder.moe_flags) if flag]
        self.num_experts = int(moe_layers[0].num_experts) if moe_layers else 1
        self.num_moe_total = n_moe
        mtp = getattr(model, "mtp", None)
        self.has_mtp = self.last and mtp is not None and len(mtp) > 0
        if self.has_mtp:
            self.mtp = mtp
            self.mtp_coef = float(cfg.mtp_loss_coef)
            if not self.tied:
                self.embed_tokens = decoder.embed_tokens  # the shifted tokens' embedding (a copy, as tied)
        # Both ends use the embedding Parameter (tied head or MTP): its two gradients are summed over pp.
        self.shares_embedding = (self.tied or (mtp is not None and len(mtp) > 0)) and pp > 1

    def tied_embedding(self):
        """The embedding Parameter both ends hold (None when neither tied nor MTP, or on a middle stage)."""
        if self.shares_embedding and (self.first or self.last):
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
        if not self.moe:
            for i in range(self.num_layers):
                h = self.layers[i](h, cos, sin, mask)[0]
            if not self.last:
                return h
            h = self.norm(h)
            return self.loss_fn(self.head_model[0].logits_from_hidden(h), labels)
        balance = ops.zeros((), ms.float32)
        z_loss = ops.zeros((), ms.float32)
        loads = ()
        for i in range(self.num_layers):
            h, _, _, bal, z, load = self.layers[i](h, cos, sin, mask)
            if self.moe_flags[i]:
                balance = balance + bal
                z_loss = z_loss + z
                loads = loads + (load,)
        aux = ops.zeros((), ms.float32)
        if self.balance_coef > 0:
            aux = aux + balance * self.balance_coef
        if self.z_coef > 0:
            aux = aux + z_loss * self.z_coef
        stacked = ops.stack(loads) if self.num_moe_local else ops.zeros((1, self.num_experts), ms.float32)
        if not self.last:
            return h, aux, stacked
        h = self.norm(h)
        lm_loss = self.loss_fn(self.head_model[0].logits_from_hidden(h), labels)
        if self.has_mtp:
            aux = aux + self.mtp_coef * mtp_loss(self.head_model[0], input_ids, labels, h, self.loss_fn)
        return lm_loss + aux, lm_loss, aux, stacked

    def update_expert_bias(self, loads, rate: float):
        """Auxiliary-loss-free balancing on this stage's routers: bias += rate * sign(mean load - load)."""
        j = 0
        for i in range(self.num_layers):
            if self.moe_flags[i]:
                router = self.layers[i].mlp.gate
                if router.has_bias:
                    load = loads[j]
                    loads = ops.depend(loads, ops.assign_add(router.e_score_correction_bias, rate * ops.sign(load.mean() - load)))
                j += 1
        return loads
