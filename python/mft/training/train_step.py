"""The compiled train step: forward, backward, clip, optimizer — graph-mode Cells.

The step is a `nn.Cell` called directly while MindSpore's context is in
GRAPH_MODE, the way `nn.TrainOneStepCell` runs. On this backend that matters
as much as the model: the same cell compiled through `ms.jit(cell.construct)`
from PyNative stalled 100–300 ms between steps at random
(docs/advanced/performance_tuning.md has the measurements). After its first
(compiling) call, a step cell runs straight on MindSpore's graph executor
(`GraphCaller`), skipping the per-call Python of `Cell.__call__` and the two
context switches: at batch 1 a step is launch-bound and that Python is a
measurable share of it.

With gradient accumulation, micro-batches run through a forward+backward
cell that adds into gradient buffers, and a second cell applies the
averaged gradient; both compile once.
"""

from __future__ import annotations

import contextlib

import mindspore as ms
from mindspore import ParameterTuple, Tensor, nn, ops

from mft.ops import clip_adamw
from mft.training.loss import causal_lm_loss, fused_causal_lm_loss


@contextlib.contextmanager
def graph_mode(enabled: bool = True):
    """Run the body with MindSpore's execution mode set to GRAPH_MODE (restored after)."""
    if not enabled:
        yield
        return
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        yield
    finally:
        ms.set_context(mode=previous)


def global_norm(grads) -> Tensor:
    # float32 gradients where mft's kernels load: one kernel with a fixed summation order
    # (mft.ops.clip_adamw.global_norm; MindSpore's ReduceSum splits its sum by run-time tuning, so
    # its last bit followed the machine's load). Otherwise one concat + one reduction instead of a
    # square/sum pair per tensor: on CPU every kernel launch costs.
    if clip_adamw.takes(grads):
        return clip_adamw.global_norm(grads)
    flat = ops.concat([g.astype(ms.float32).reshape(-1) for g in grads])
    return ops.sqrt(ops.square(flat).sum())


def clip_by_global_norm(grads, max_norm: float | None, norm_fn=None):
    """`norm_fn` (a Cell, e.g. tensor parallel's TPGradNorm) replaces the local norm when given."""
    norm = global_norm(grads) if norm_fn is None else norm_fn(grads)
    if max_norm is None or max_norm <= 0:
        return grads, norm
    scale = ops.minimum(ms.Tensor(1.0, ms.float32), max_norm / (norm + 1e-6))
    return tuple(g * scale.astype(g.dtype) for g in grads), norm


def uses_fused_update(optimizer, grad_norm) -> bool:
    """The one-kernel clip + update (AdamW(fused=True)) needs the norm to be this process's own:
    tensor/expert parallel and ZeRO norms (a `grad_norm` Cell) take the composed path."""
    return grad_norm is None and bool(getattr(optimizer, "fused", False))


def clip_and_update(optimizer, grads, lr, max_norm, norm_fn=None, hyper=None):
    """Clip and apply one optimizer step unless the gradients are not finite -> the pre-clip norm.
    `hyper` (from `optimizer.fused_hyper`) selects the fused kernel, which does both in one launch."""
    if hyper is not None:
        return optimizer.clip_update(grads, lr, hyper)
    grads, norm = clip_by_global_norm(grads, max_norm, norm_fn)
    if ops.isfinite(norm):  # non-finite gradients apply no update
        optimizer(grads, lr)
    return norm


class CausalLMLoss(nn.Cell):
    """model + loss as one Cell. Dense: returns the loss. MoE: returns
    (LM loss + aux loss, LM loss, aux loss, expert loads); only the first is differentiated."""

    def __init__(self, model: nn.Cell):
        super().__init__(auto_prefix=False)  # parameter names stay the model's own
        self.model = model
        self.moe = getattr(model, "num_moe_layers", 0) > 0
        # Tensor parallel: the model returns this rank's vocabulary slice of the logits.
        self.vocab_parallel = getattr(model, "tp_size", 1) > 1
        self.vp_loss = None
        # model.fused_cross_entropy: the C++ loss kernel (one launch each way, no N x V log-softmax).
        fused = bool(getattr(model.config, "fused_cross_entropy", False))
        self.loss_fn = fused_causal_lm_loss if fused else causal_lm_loss
        if self.vocab_parallel:
            from mft.parallel.cross_entropy import VocabParallelCrossEntropy

            self.vp_loss = VocabParallelCrossEntropy(model.tp_group, model.config.vocab_size)
        # Context parallel: full rows in, this rank's two chunks selected; the loss is the cp group's token mean.
        cp = getattr(model, "cp_info", None)
        self.cp = cp is not None
        if self.cp:
            from mft.parallel import context_parallel

            self.cp_select = context_parallel.chunk_select(cp)
            self.cp_total = context_parallel.loss_total(cp)

    def construct(self, input_ids, labels):
        if self.cp:
            input_ids = self.cp_select(input_ids)
            labels = self.cp_select(labels)
        if self.moe:
            lm_loss, aux, load = self.model.train_forward(input_ids, labels, self.loss_fn)
            return lm_loss + aux, lm_loss, aux, load
        if self.vocab_parallel:
            loss = self.vp_loss(self.model(input_ids), labels)
        else:
            loss = self.loss_fn(self.model(input_ids), labels)
        if self.cp:
            loss = self.cp_total(loss, labels)
        return loss


class _ScaledLoss(nn.Cell):
    """(loss x scale, loss[, aux, loads]): the first output is what is differentiated."""

    def __init__(self, loss_cell: CausalLMLoss):
        super().__init__(auto_prefix=False)
        self.loss_cell = loss_cell
        self.moe = loss_cell.moe

    def construct(self, input_ids, labels, scale):
        if self.moe:
            total, lm_loss, aux, load = self.loss_cell(input_ids, labels)
            return total * scale, lm_loss, aux, load
        loss = self.loss_cell(input_ids, labels)
        return loss * scale, loss


class _GradCell(nn.Cell):
    """Forward + backward of the loss cell w.r.t. the optimizer's parameters.

    `grad_reducer` (a Cell mapping the grads tuple to a tuple) is where data
    parallelism averages gradients across ranks; None keeps them local.
    `scaled`: the loss is multiplied by the `scale` input before the backward
    and the gradients divided by it after (fp16 loss scaling); otherwise
    `scale` is ignored.
    """

    def __init__(self, loss_cell: CausalLMLoss, params: ParameterTuple, grad_reducer: nn.Cell | None, bias_rate: float,
                 scaled: bool = False):
        super().__init__(auto_prefix=False)
        self.loss_cell = loss_cell
        self.params = params
        self.moe = loss_cell.moe
        self.scaled = scaled
        if scaled:
            self.grad_fn = ms.value_and_grad(_ScaledLoss(loss_cell), None, params, has_aux=True)
        else:
            self.grad_fn = ms.value_and_grad(loss_cell, None, params, has_aux=self.moe)
        self.grad_reducer = grad_reducer
        self.reduce = grad_reducer is not None
        self.bias_rate = bias_rate

    def construct(self, input_ids, labels, scale):
        """-> (loss or (lm loss, aux, loads), grads)."""
        if self.scaled:
            outputs, grads = self.grad_fn(input_ids, labels, scale)
            inv = 1.0 / scale
            grads = tuple(g * inv.astype(g.dtype) for g in grads)
            if self.moe:
                lm_loss, aux, load = outputs[1], outputs[2], outputs[3]
            else:
                loss = outputs[1]
        elif self.moe:
            (_, lm_loss, aux, load), grads = self.grad_fn(input_ids, labels)
        else:
            loss, grads = self.grad_fn(input_ids, labels)
        if self.reduce:
            grads = self.grad_reducer(grads)
        if not self.moe:
            return loss, grads
        if self.bias_rate > 0:
            load = self.loss_cell.model.update_expert_bias(load, self.bias_rate)
        return (lm_loss, aux, load), grads


def _scale_of(loss_scale):
    return ops.ones((), ms.float32) if loss_scale is None else loss_scale.scale


class FusedStepCell(nn.Cell):
    """One optimizer step on one micro-batch: -> (loss, pre-clip grad norm, loss scale).

    A step whose gradients are not finite (a NaN/Inf loss, an fp16 overflow)
    applies no update: the weights and optimizer state stay those of the last
    completed step, so nothing on the host has to keep a copy of them.
    """

    def __init__(self, grad_cell: _GradCell, optimizer: nn.Cell, clip_grad_norm: float | None, loss_scale: nn.Cell | None,
                 grad_norm: nn.Cell | None = None):
        super().__init__(auto_prefix=False)
        self.grad_cell = grad_cell
        self.optimizer = optimizer
        self.clip = clip_grad_norm
        self.grad_norm = grad_norm
        self.loss_scale = loss_scale
        self.scaled = loss_scale is not None
        self.fused_update = uses_fused_update(optimizer, grad_norm)
        self.hyper = optimizer.fused_hyper(clip_grad_norm) if self.fused_update else None

    def construct(self, input_ids, labels, lr):
        scale = _scale_of(self.loss_scale)
        loss, grads = self.grad_cell(input_ids, labels, scale)
        norm = clip_and_update(self.optimizer, grads, lr, self.clip, self.grad_norm, self.hyper)
        if self.scaled:
            scale = self.loss_scale(ops.isfinite(norm))
        return loss, norm, scale


class MicroStepCell(nn.Cell):
    """Forward + backward of one micro-batch, gradients added into the buffers."""

    def __init__(self, grad_cell: _GradCell, buffers: ParameterTuple, loss_scale: nn.Cell | None):
        super().__init__(auto_prefix=False)
        self.grad_cell = grad_cell
        self.buffers = buffers
        self.loss_scale = loss_scale

    def construct(self, input_ids, labels):
        loss, grads = self.grad_cell(input_ids, labels, _scale_of(self.loss_scale))
        for i in range(len(self.buffers)):
            ops.assign_add(self.buffers[i], grads[i])
        return loss


class ApplyStepCell(nn.Cell):
    """Averages the accumulated gradients, clips, updates, zeroes the buffers."""

    def __init__(self, optimizer: nn.Cell, buffers: ParameterTuple, accum_steps: int, clip_grad_norm: float | None,
                 loss_scale: nn.Cell | None, grad_norm: nn.Cell | None = None):
        super().__init__(auto_prefix=False)
        self.optimizer = optimizer
        self.buffers = buffers
        self.inv = 1.0 / accum_steps
        self.clip = clip_grad_norm
        self.grad_norm = grad_norm
        self.loss_scale = loss_scale
        self.scaled = loss_scale is not None
        self.fused_update = uses_fused_update(optimizer, grad_norm)
        self.hyper = optimizer.fused_hyper(clip_grad_norm) if self.fused_update else None

    def construct(self, lr):
        grads = tuple(b * self.inv for b in self.buffers)
        norm = clip_and_update(self.optimizer, grads, lr, self.clip, self.grad_norm, self.hyper)  # as FusedStepCell
        scale = self.loss_scale(ops.isfinite(norm)) if self.scaled else _scale_of(self.loss_scale)
        for i in range(len(self.buffers)):
            ops.assign(self.buffers[i], ops.zeros_like(self.buffers[i]))
        return norm, scale


class TrainStep:
    """Call `step(input_ids, labels, lr)` with arrays shaped (accum, batch, seq).

    `jit=False` runs the same cells eagerly (PyNative), for debugging.
    `loss_scale` (a `DynamicLossScale`) turns on fp16 loss scaling.
    `loss_factory(model)` builds the loss Cell in CausalLMLoss's place (same
    inputs, a `moe` attribute), e.g. mft.finetune.distill's DistillLoss.
    """

    def __init__(self, model: nn.Cell, optimizer: nn.Cell, clip_grad_norm: float | None, accum_steps: int,
                 jit: bool = True, grad_reducer: nn.Cell | None = None, loss_scale: nn.Cell | None = None,
                 loss_factory=None):
        self.model = model
        self.optimizer = optimizer
        self.accum_steps = accum_steps
        self.jit = jit
        self.loss_scale = loss_scale
        params = ParameterTuple(optimizer.params)
        loss_cell = (loss_factory or CausalLMLoss)(model)  # model -> loss Cell (e.g. finetune.distill's DistillLoss)
        self.moe = loss_cell.moe
        self.moe_stats: dict = {}
        self.last_loss_scale = 1.0
        bias_rate = float(getattr(model.config, "moe_bias_update_rate", 0.0)) if self.moe else 0.0
        # Tensor parallel (a no-op at tp=1): partial gradients summed over tp before the dp reducer,
        # and the clip norm taken over the whole model, not this rank's pieces.
        from mft.parallel import tensor_parallel

        # parallel.zero=2 (mft.parallel.zero): grads reduce-scattered into this rank's flat shard, its own clip norm.
        zero2 = getattr(optimizer, "zero_stage", 0) == 2
        grad_reducer = tensor_parallel.grad_reducer(model, params, optimizer.grad_reducer() if zero2 else grad_reducer)
        grad_norm = optimizer.grad_norm() if zero2 else tensor_parallel.grad_norm(model, params)
        from mft.parallel import expert_parallel

        grad_norm = expert_parallel.grad_norm(model, params) or grad_norm  # ep: expert grads' squares summed over ep
        grad_cell = _GradCell(loss_cell, params, grad_reducer, bias_rate, scaled=loss_scale is not None)
        if accum_steps == 1:
            self._fused = FusedStepCell(grad_cell, optimizer, clip_grad_norm, loss_scale, grad_norm)
            self._fused.set_train()
        else:
            self.grad_buffers = optimizer.grad_buffers() if zero2 else params.clone(prefix="grad_accum", init="zeros")
            self._micro = MicroStepCell(grad_cell, self.grad_buffers, loss_scale)
            self._apply = ApplyStepCell(optimizer, self.grad_buffers, accum_steps, clip_grad_norm, loss_scale, grad_norm)
            self._micro.set_train()
            self._apply.set_train()

    def state_tensors(self) -> dict:
        """Everything a checkpoint must hold to resume the step exactly: optimizer (+ loss scale) state."""
        state = dict(self.optimizer.state_tensors())
        if self.loss_scale is not None:
            state.update(self.loss_scale.state_tensors())
        return state

    def _call(self, cell, *inputs):
        """One step cell: compiled (GRAPH_MODE) and later called direct on the graph executor; eager without jit."""
        if not self.jit:
            return cell(*inputs)
        from mft.graph_call import GraphCaller

        return GraphCaller.of(cell)(*inputs)

    def _unpack(self, loss):
        """MoE steps return (LM loss, aux loss, loads): keep the stats, report the LM loss."""
        if not self.moe:
            return loss
        lm_loss, aux, load = loss
        self.moe_stats = {"aux_loss": float(aux.asnumpy()), "expert_load": load.asnumpy()}
        return lm_loss

    def step(self, input_ids, labels, lr: float) -> tuple[float, float]:
        """Returns (mean loss over micro-batches, pre-clip gradient norm).

        With loss scaling, a non-finite norm means the step was skipped;
        `last_loss_scale` holds the scale after the step.
        """
        lr_t = Tensor(lr, ms.float32)
        if self.accum_steps == 1:
            loss, norm, scale = self._call(self._fused, Tensor(input_ids[0]), Tensor(labels[0]), lr_t)
            loss = float(self._unpack(loss).asnumpy())
        else:
            losses = [self._unpack(self._call(self._micro, Tensor(input_ids[i]), Tensor(labels[i]))) for i in range(self.accum_steps)]
            norm, scale = self._call(self._apply, lr_t)
            loss = float(sum(float(l.asnumpy()) for l in losses) / self.accum_steps)
        self.last_loss_scale = float(scale.asnumpy())
        return loss, float(norm.asnumpy())
