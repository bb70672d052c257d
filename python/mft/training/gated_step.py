"""A train step with a gate before the update and optional per-tensor gradient norms.

Used instead of `TrainStep` only when `monitor.spike.action=skip` (gate) or
`monitor.layer_norms` (per-tensor squared gradient norms) is set, so the
default step graph stays exactly as `train_step.py` builds it.

Gate: the compiled step takes two more inputs, `max_loss` and `max_norm`
(from `SpikeDetector.limits()`), and applies the optimizer only when
loss and pre-clip grad norm are finite and <= them — decided inside the
graph, before the update, so a spiking batch never touches the weights or
the optimizer state (AdamW's step counter included). With gradient
accumulation the mean micro-batch loss is known before the apply cell runs
and is passed in. MoE expert-bias updates happen in the backward cell and
are not gated. fp16 loss scaling keeps its own rule: the scale reacts to
overflow only.
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import ParameterTuple, Tensor, nn, ops

from mft.training.train_step import TrainStep, _scale_of, clip_by_global_norm, global_norm, uses_fused_update


def _per_tensor_sq(grads):
    return ops.stack([ops.square(g.astype(ms.float32)).sum() for g in grads])


def _gated_update(cell, grads, lr, loss, max_loss, max_norm):
    """-> (pre-clip norm, applied). With AdamW(fused=True) the norm is the fused kernel's own (the same
    fixed-order sum) and the update that kernel, so a run gives the plain step's numbers bit for bit."""
    if cell.hyper is not None:
        norm = global_norm(grads)
        ok = _gate(loss, norm, max_loss, max_norm)
        if ok:
            cell.optimizer.clip_update(grads, lr, cell.hyper)
        return norm, ok
    grads, norm = clip_by_global_norm(grads, cell.clip)
    ok = _gate(loss, norm, max_loss, max_norm)
    if ok:
        cell.optimizer(grads, lr)
    return norm, ok


def _gate(loss, norm, max_loss, max_norm):
    return ops.logical_and(
        ops.logical_and(ops.isfinite(loss), ops.isfinite(norm)),
        ops.logical_and(loss <= max_loss, norm <= max_norm),
    )


class GatedFusedStepCell(nn.Cell):
    """-> (loss, pre-clip norm, loss scale, applied, per-tensor grad sq sums or a dummy)."""

    def __init__(self, grad_cell, optimizer, clip_grad_norm, loss_scale, moe: bool, grad_sq: bool):
        super().__init__(auto_prefix=False)
        self.grad_cell = grad_cell
        self.optimizer = optimizer
        self.clip = clip_grad_norm
        self.loss_scale = loss_scale
        self.scaled = loss_scale is not None
        self.moe = moe
        self.grad_sq = grad_sq
        self.hyper = optimizer.fused_hyper(clip_grad_norm) if uses_fused_update(optimizer, None) else None

    def construct(self, input_ids, labels, lr, max_loss, max_norm):
        scale = _scale_of(self.loss_scale)
        loss, grads = self.grad_cell(input_ids, labels, scale)
        lm = loss[0] if self.moe else loss
        sq = _per_tensor_sq(grads) if self.grad_sq else ops.zeros((1,), ms.float32)
        norm, ok = _gated_update(self, grads, lr, lm, max_loss, max_norm)
        new_scale = self.loss_scale(ops.isfinite(norm)) if self.scaled else scale
        return loss, norm, new_scale, ok, sq


class GatedApplyStepCell(nn.Cell):
    """Accumulated gradients: average, clip, gated update, zero -> (norm, scale, applied, sq)."""

    def __init__(self, optimizer, buffers: ParameterTuple, accum_steps: int, clip_grad_norm, loss_scale, grad_sq: bool):
        super().__init__(auto_prefix=False)
        self.optimizer = optimizer
        self.buffers = buffers
        self.inv = 1.0 / accum_steps
        self.clip = clip_grad_norm
        self.loss_scale = loss_scale
        self.scaled = loss_scale is not None
        self.grad_sq = grad_sq
        self.hyper = optimizer.fused_hyper(clip_grad_norm) if uses_fused_update(optimizer, None) else None

    def construct(self, lr, loss, max_loss, max_norm):
        grads = tuple(b * self.inv for b in self.buffers)
        sq = _per_tensor_sq(grads) if self.grad_sq else ops.zeros((1,), ms.float32)
        norm, ok = _gated_update(self, grads, lr, loss, max_loss, max_norm)
        scale = self.loss_scale(ops.isfinite(norm)) if self.scaled else _scale_of(self.loss_scale)
        for i in range(len(self.buffers)):
            ops.assign(self.buffers[i], ops.zeros_like(self.buffers[i]))
        return norm, scale, ok, sq


class GatedTrainStep(TrainStep):
    """`TrainStep` whose `step(..., limits=(max_loss, max_norm))` may drop the update.

    After each step: `last_applied` (bool) and, with `grad_sq=True`,
    `last_grad_sq` (float64 per optimizer parameter, pre-clip squared norms).
    """

    def __init__(self, *args, grad_sq: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.grad_sq = grad_sq
        self.last_applied = True
        self.last_grad_sq: np.ndarray | None = None
        clip = args[2] if len(args) > 2 else kwargs["clip_grad_norm"]
        if self.accum_steps == 1:
            self._gated = GatedFusedStepCell(self._fused.grad_cell, self.optimizer, clip, self.loss_scale, self.moe, grad_sq)
        else:
            self._gated = GatedApplyStepCell(self.optimizer, self.grad_buffers, self.accum_steps, clip, self.loss_scale, grad_sq)
        self._gated.set_train()

    def step(self, input_ids, labels, lr: float, limits: tuple[float, float] = (float("inf"), float("inf"))):
        lr_t = Tensor(lr, ms.float32)
        max_loss, max_norm = (Tensor(float(v), ms.float32) for v in limits)
        if self.accum_steps == 1:
            loss, norm, scale, ok, sq = self._call(self._gated, Tensor(input_ids[0]), Tensor(labels[0]), lr_t, max_loss, max_norm)
            loss = float(self._unpack(loss).asnumpy())
        else:
            losses = [self._unpack(self._call(self._micro, Tensor(input_ids[i]), Tensor(labels[i]))) for i in range(self.accum_steps)]
            loss = float(sum(float(l.asnumpy()) for l in losses) / self.accum_steps)
            norm, scale, ok, sq = self._call(self._gated, lr_t, Tensor(loss, ms.float32), max_loss, max_norm)
        self.last_loss_scale = float(scale.asnumpy())
        self.last_applied = bool(ok.asnumpy())
        self.last_grad_sq = sq.asnumpy().astype(np.float64) if self.grad_sq else None
        return loss, float(norm.asnumpy())
