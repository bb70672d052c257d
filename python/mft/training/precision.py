"""Mixed precision: low-precision compute over fp32 master weights, and the
dynamic loss scale fp16 needs.

`set_compute_dtype(model, dtype)` makes every linear/embedding layer cast its
weights (and inputs) to `dtype` on use; parameters, gradients and optimizer
state stay fp32. Norms, softmax, the router and the loss already compute in
fp32 (they cast up themselves).

fp16's narrow range underflows small gradients, so the loss is multiplied
by a scale before the backward and the gradients divided by it after. The
scale is dynamic, as in Megatron and MindSpore's DynamicLossScaleManager: a
step whose gradients overflow (non-finite global norm) is skipped and the
scale divided by `growth_factor`; after `growth_interval` clean steps in a
row it is multiplied by `growth_factor`.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from mft.errors import MftError
from mft.parallel.layers import GroupedLinear, VocabParallelEmbedding, _Linear

DTYPES = {"fp32": ms.float32, "fp16": ms.float16, "bf16": ms.bfloat16}


def compute_dtype_for(precision: str, device: str):
    """The compute dtype of `train.precision`, refusing what the device cannot run."""
    if precision not in DTYPES:
        raise MftError(f"train.precision: {precision!r} is not one of {sorted(DTYPES)}")
    if precision == "bf16" and device == "CPU":
        raise MftError("train.precision=bf16: MindSpore's CPU backend has no bfloat16 MatMul kernel; "
                       "use fp16 or fp32 on CPU (bf16 runs on Ascend and GPU)")
    return DTYPES[precision]


def check_loss_scale(train_cfg) -> None:
    """train.loss_scale values that make sense (checked for every precision, used by fp16)."""
    ls = train_cfg.loss_scale
    if not ls.initial_scale > 0:
        raise MftError(f"train.loss_scale.initial_scale must be > 0, got {ls.initial_scale}")
    if not ls.growth_factor > 1:
        raise MftError(f"train.loss_scale.growth_factor must be > 1, got {ls.growth_factor}")
    if ls.growth_interval < 1:
        raise MftError(f"train.loss_scale.growth_interval must be >= 1, got {ls.growth_interval}")
    if not 0 < ls.min_scale <= ls.initial_scale:
        raise MftError(f"train.loss_scale.min_scale must be in (0, initial_scale={ls.initial_scale}], got {ls.min_scale}")


def set_compute_dtype(model: nn.Cell, dtype) -> None:
    """Every linear / embedding layer of `model` computes in `dtype` (None: its parameters' dtype)."""
    value = None if dtype == ms.float32 else dtype
    for _, cell in model.cells_and_names():
        if isinstance(cell, (_Linear, VocabParallelEmbedding, GroupedLinear)):
            cell.compute_dtype = value


class DynamicLossScale(nn.Cell):
    """The scale and its clean-step counter, as Parameters (checkpointed with the optimizer).

    `update(finite)` runs inside the compiled step and returns the new scale.
    """

    def __init__(self, initial_scale: float, growth_factor: float, growth_interval: int, min_scale: float):
        super().__init__()
        self.scale = Parameter(Tensor(float(initial_scale), ms.float32), name="loss_scale", requires_grad=False)
        self.good_steps = Parameter(Tensor(0, ms.int32), name="loss_scale_good_steps", requires_grad=False)
        self.factor = float(growth_factor)
        self.interval = int(growth_interval)
        self.min_scale = float(min_scale)

    def construct(self, finite):
        good = ops.select(finite, self.good_steps + 1, ops.zeros_like(self.good_steps))
        grow = good >= self.interval
        grown = ops.select(grow, self.scale * self.factor, self.scale)
        shrunk = ops.maximum(self.scale / self.factor, self.min_scale)
        scale = ops.select(finite, grown, shrunk)
        good = ops.select(grow, ops.zeros_like(good), good)
        ops.assign(self.good_steps, good)
        ops.assign(self.scale, scale)
        return scale

    def state_tensors(self) -> dict[str, Parameter]:
        return {"loss_scale": self.scale, "loss_scale_good_steps": self.good_steps}
