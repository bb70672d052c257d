"""The compiled train step: forward, backward, clip, AdamW — one `ms.jit` graph.

With gradient accumulation, micro-batches run through a jitted
forward+backward that adds into gradient buffers, and a second jitted
function applies the averaged gradient; both graphs compile once.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import ParameterTuple, Tensor, nn, ops

from mft.training.loss import causal_lm_loss
from mft.training.optimizer import AdamW


def global_norm(grads) -> Tensor:
    # One concat + one reduction instead of a square/sum pair per tensor: on CPU
    # every kernel launch costs, and a model has hundreds of small tensors.
    flat = ops.concat([g.astype(ms.float32).reshape(-1) for g in grads])
    return ops.sqrt(ops.square(flat).sum())


def clip_by_global_norm(grads, max_norm: float | None):
    norm = global_norm(grads)
    if max_norm is None or max_norm <= 0:
        return grads, norm
    scale = ops.minimum(ms.Tensor(1.0, ms.float32), max_norm / (norm + 1e-6))
    return tuple(g * scale.astype(g.dtype) for g in grads), norm


class TrainStep:
    """Call `step(input_ids, labels, lr)` with arrays shaped (accum, batch, seq)."""

    def __init__(self, model: nn.Cell, optimizer: AdamW, clip_grad_norm: float | None, accum_steps: int, jit: bool = True):
        self.model = model
        self.optimizer = optimizer
        self.accum_steps = accum_steps
        params = optimizer.params
        # MoE models: the loss adds their auxiliary losses; expert loads come out for bias updates and stats.
        self.moe = getattr(model, "num_moe_layers", 0) > 0
        self.moe_stats: dict = {}
        bias_rate = float(getattr(model.config, "moe_bias_update_rate", 0.0)) if self.moe else 0.0
        raw_grad_fn = ms.value_and_grad(self._loss, None, params, has_aux=self.moe)

        def grad_fn(input_ids, labels):
            if not self.moe:
                return raw_grad_fn(input_ids, labels)
            (total, lm_loss, aux, load), grads = raw_grad_fn(input_ids, labels)
            if bias_rate > 0:
                model.update_expert_bias(load, bias_rate)
            return (lm_loss, aux, load), grads

        compile_ = ms.jit if jit else (lambda f: f)

        def fused_step(input_ids, labels, lr):
            loss, grads = grad_fn(input_ids, labels)
            grads, norm = clip_by_global_norm(grads, clip_grad_norm)
            optimizer(grads, lr)
            return loss, norm

        self._fused = compile_(fused_step)
        if accum_steps > 1:
            self.grad_buffers = ParameterTuple(params).clone(prefix="grad_accum", init="zeros")
            buffers = self.grad_buffers
            inv = 1.0 / accum_steps

            def micro_step(input_ids, labels):
                loss, grads = grad_fn(input_ids, labels)
                for i in range(len(buffers)):
                    ops.assign_add(buffers[i], grads[i])
                return loss

            def apply_step(lr):
                grads = tuple(b * inv for b in buffers)
                grads, norm = clip_by_global_norm(grads, clip_grad_norm)
                optimizer(grads, lr)
                for i in range(len(buffers)):
                    ops.assign(buffers[i], ops.zeros_like(buffers[i]))
                return norm

            self._micro = compile_(micro_step)
            self._apply = compile_(apply_step)

    def _loss(self, input_ids, labels):
        if self.moe:
            lm_loss, aux, load = self.model.train_forward(input_ids, labels, causal_lm_loss)
            return lm_loss + aux, lm_loss, aux, load
        return causal_lm_loss(self.model(input_ids), labels)

    def _unpack(self, loss):
        """MoE steps return (LM loss, aux loss, loads): keep the stats, report the LM loss."""
        if not self.moe:
            return loss
        lm_loss, aux, load = loss
        self.moe_stats = {"aux_loss": float(aux.asnumpy()), "expert_load": load.asnumpy()}
        return lm_loss

    def step(self, input_ids, labels, lr: float) -> tuple[float, float]:
        """Returns (mean loss over micro-batches, pre-clip gradient norm)."""
        lr_t = Tensor(lr, ms.float32)
        if self.accum_steps == 1:
            loss, norm = self._fused(Tensor(input_ids[0]), Tensor(labels[0]), lr_t)
            return float(self._unpack(loss).asnumpy()), float(norm.asnumpy())
        losses = [self._unpack(self._micro(Tensor(input_ids[i]), Tensor(labels[i]))) for i in range(self.accum_steps)]
        norm = self._apply(lr_t)
        return float(sum(float(l.asnumpy()) for l in losses) / self.accum_steps), float(norm.asnumpy())
