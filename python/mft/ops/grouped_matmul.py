"""Grouped matmul for sparse MoE experts: rows grouped by expert, one weight per group.

`grouped_matmul(x (N, K), weight (E, O, K), tokens_per_expert (E,) int32)` -> (N, O):
rows [start_e, start_e + tokens_per_expert[e]) of x are multiplied by weight[e]^T
(weights stacked in nn.Linear's (out, in) layout). With rows from `moe_permute`
(N = tokens * top_k), an MoE layer computes only the (token, expert) pairs the
router chose, instead of every expert on every token.

fused=True runs csrc/kernels/grouped_gemm.cc through MindSpore's aot Custom op
(CPU target, float32), differentiable in PyNative and inside graph-mode train
steps. fused=False is the composed reference (every expert on every row, then
a one-hot select): exact, but E times the work, so it is for parity tests and
for backends without the kernels.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import ops

from mft.errors import MftError
from mft.ops import registry

FORWARD_OP = "mft.grouped_matmul"
BACKWARD_OP = "mft.grouped_matmul_backward"


def grouped_matmul_reference(x, weight, tokens_per_expert):
    """Composed MindSpore ops: each row's product with its own expert's weight."""
    n = x.shape[0]
    e = weight.shape[0]
    ends = ops.cumsum(tokens_per_expert.astype(ms.int32), 0)
    rows = ops.arange(0, n, dtype=ms.int32).reshape(n, 1)
    group = (rows >= ends.reshape(1, e)).astype(ms.int32).sum(1)  # the expert each row belongs to
    every = ops.BatchMatMul(transpose_b=True)(ops.broadcast_to(x.expand_dims(0), (e,) + tuple(x.shape)), weight)
    pick = ops.one_hot(group, e, ms.Tensor(1.0, x.dtype), ms.Tensor(0.0, x.dtype))  # (N, E)
    return (every * pick.swapaxes(0, 1).expand_dims(-1)).sum(0)


def _element_type(dtype):
    return dtype.element_type() if hasattr(dtype, "element_type") else dtype


def _forward_shape(x, w, counts):
    if len(x) != 2 or len(w) != 3 or w[2] != x[1] or tuple(counts) != (w[0],):
        raise MftError(f"grouped_matmul: x must be (rows, in), weight (experts, out, in) and tokens_per_expert "
                       f"(experts,); got x {tuple(x)}, weight {tuple(w)}, tokens_per_expert {tuple(counts)}")
    return [x[0], w[1]]


def _forward_dtype(x, w, counts):
    for what, dtype, want in (("x", x, ms.float32), ("weight", w, ms.float32), ("tokens_per_expert", counts, ms.int32)):
        if _element_type(dtype) != want:
            raise MftError(f"grouped_matmul (fused=True): {what} must be {want}, got {dtype}; use fused=False")
    return ms.float32


def _bprop(x, w, counts, out, dout):
    dx, dw = _BACKWARD(dout, x, w, counts)
    return dx, dw, ops.zeros_like(counts)


def fused_ops():
    """Registers the aot primitives (once); returns the forward op."""
    global _FORWARD, _BACKWARD
    lib = registry.kernels_library()
    _BACKWARD = registry.register_aot_op(BACKWARD_OP, lib, "MftGroupedMatmulBackward",
                                         out_shape=lambda dy, x, w, c: (x, w),
                                         out_dtype=lambda dy, x, w, c: (ms.float32, ms.float32))
    _FORWARD = registry.register_aot_op(FORWARD_OP, lib, "MftGroupedMatmul", out_shape=_forward_shape,
                                        out_dtype=_forward_dtype, bprop=_bprop)
    return _FORWARD


_FORWARD = _BACKWARD = None
registry.build_at_import(fused_ops)  # graph-mode code reads the ops as globals


def grouped_matmul(x, weight, tokens_per_expert, fused=True):
    """(N, O): row block e of x times weight[e]^T; see the module docstring."""
    if not fused:
        return grouped_matmul_reference(x, weight, tokens_per_expert)
    if _FORWARD is None:
        fused_ops()  # raises the MftError saying why the kernels are unavailable
    return _FORWARD(x, weight, tokens_per_expert.astype(ms.int32))


__all__ = ["grouped_matmul", "grouped_matmul_reference"]
