"""Global-norm gradient clipping + AdamW over every parameter tensor, in one C++ call.

At small batch a train step is launch-bound: the composed update is a concat,
a norm, a multiply per gradient and an AdamW kernel per parameter (about two
launches per tensor, ~50 for a 2-layer Llama), and on CPU each launch costs
tens of microseconds. `clip_adamw` is one launch (csrc/kernels/clip_adamw.cc).

It updates the parameters, both moments and the step counter in place: the
op carries MindSpore's `side_effect_mem` attribute, so graphs order it the way
they order `Assign`. When the gradient norm is not finite it writes nothing,
which is how the train step skips a NaN/Inf (or fp16-overflow) step.

The reference is mft's composed path (`clip_by_global_norm` followed by
`AdamW.construct`); tests/python/test_clip_adamw.py checks both against an
independent numpy AdamW.
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import Tensor
from mindspore.ops import constexpr

from mft.errors import MftError
from mft.ops import registry

OP = "mft.clip_adamw"
NORM_OP = "mft.global_norm"
FIXED_INPUTS = 4  # lr, hyper, step, settings


def _element_type(dtype):
    return dtype.element_type() if hasattr(dtype, "element_type") else dtype


def _out_shape(*shapes):
    if len(shapes) < FIXED_INPUTS + 4 or (len(shapes) - FIXED_INPUTS) % 4:
        raise MftError(f"clip_adamw: expected lr, hyper, step, settings and 4 x N tensors, got {len(shapes)} inputs")
    n = (len(shapes) - FIXED_INPUTS) // 4
    for i in range(n):
        group = [shapes[FIXED_INPUTS + i + k * n] for k in range(4)]
        if any(tuple(s) != tuple(group[0]) for s in group):
            raise MftError(f"clip_adamw: tensor {i}: param, moments and grad shapes differ: {group}")
    return (1,)  # a 0-d aot output comes back as a Number type in graphs: (1,), reshaped by clip_adamw


def _out_dtype(*dtypes):
    for i, dt in enumerate(dtypes):
        want = ms.int32 if i == 2 else ms.float32
        if _element_type(dt) != want:
            raise MftError(f"clip_adamw: input {i} has dtype {dt}; the kernel takes float32 tensors (int32 step)")
    return ms.float32


def _norm_dtype(*dtypes):
    if any(_element_type(d) != ms.float32 for d in dtypes):
        raise MftError(f"global_norm: the kernel takes float32 gradients; got {dtypes}")
    return ms.float32


def fused_ops():
    """The aot primitives (clip + AdamW, global norm), registered on first use; MftError if the kernels cannot run."""
    global _OP, _NORM
    lib = registry.kernels_library()
    op = registry.register_aot_op(OP, lib, "MftClipAdamW", out_shape=_out_shape, out_dtype=_out_dtype)
    op.add_prim_attr("side_effect_mem", True)  # writes its parameter inputs: keep it ordered like Assign
    _NORM = registry.register_aot_op(NORM_OP, lib, "MftGlobalNorm", out_shape=lambda *shapes: (1,), out_dtype=_norm_dtype)
    _OP = op
    return op


_OP = _NORM = None
registry.build_at_import(fused_ops)  # graph-mode code reads the op as a global


def settings_tensor(lr_scales, weight_decays) -> Tensor:
    """(lr_scale, weight_decay) per tensor, flattened: the kernel's `settings` input."""
    pairs = np.array([[float(s), float(w)] for s, w in zip(lr_scales, weight_decays)], dtype=np.float32)
    return Tensor(pairs.reshape(-1))


def hyper_tensor(beta1: float, beta2: float, eps: float, max_norm: float | None) -> Tensor:
    """The kernel's `hyper` input; max_norm None or <= 0 means no clipping."""
    return Tensor(np.array([beta1, beta2, eps, max_norm if max_norm and max_norm > 0 else 0.0], dtype=np.float32))


def clip_adamw(lr, hyper, step, settings, params, exp_avg, exp_avg_sq, grads):
    """One clipped AdamW step over all tensors, in place; returns the pre-clip global norm.

    lr: float32 scalar tensor; hyper: `hyper_tensor(...)`; step: the int32
    step-counter Parameter (incremented when the step is applied); settings:
    `settings_tensor(...)`; params / exp_avg / exp_avg_sq / grads: N float32
    tensors each, in the same order.
    """
    if _OP is None:  # constant at trace time: dead code where the kernels loaded
        fused_ops()  # raises the MftError saying why the kernels are unavailable
    return _OP(lr, hyper, step, settings, *params, *exp_avg, *exp_avg_sq, *grads).reshape(())


def global_norm(grads):
    """sqrt(sum of squares) over float32 tensors in one kernel, summed in a fixed order (the same bits under
    any machine load, unlike a MindSpore ReduceSum whose split is tuned at run time)."""
    if _NORM is None:  # constant at trace time: dead code where the kernels loaded
        fused_ops()  # raises the MftError saying why the kernels are unavailable
    return _NORM(*grads).reshape(())


def takes(grads) -> bool:
    """True where the kernels loaded and every tensor is float32 (constant while a graph compiles)."""
    return _NORM is not None and _all_float32(tuple(g.dtype for g in grads))


@constexpr
def _all_float32(dtypes) -> bool:
    return all(d == ms.float32 for d in dtypes)
