"""Quantized MoE expert stacks: a model's `GroupedLinear` (E, out, in) turned, in
place, into int8 or int4 weights with per-expert scales (and zeros), frozen.

Checkpoints hold each expert as its own linear (`...experts.<e>.<name>`) in the
folder's layout (compressed-tensors int8 `weight` + `weight_scale`, GPTQ or AWQ
int4 packing), exactly as the dense linears; `mft quantize` writes experts by
round-to-nearest under every method (GPTQ / AWQ calibrate the dense linears:
their per-expert Hessians would need each expert's routed tokens).

At run time the stack is dequantized (composed MindSpore ops) and multiplied
as before: batched matmuls on the capacity path, the grouped-matmul kernel on
the sorted path (`dense_weight()`); W8A8 also rounds each expert input row to
int8 per token (`grouped_input()`), which equals an int8 x int8 GEMM with int32
sums up to fp32 rounding. In memory int8 stacks take 1 byte per weight; int4
stacks are held unpacked, one int8 value per weight (the checkpoint packs two
per byte). There is no fused int8 grouped kernel yet: the win is memory and
checkpoint size, not decode speed.
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import Parameter, ops

QMAX = 127.0


def per_token_fake_quant(x):
    """Rows of x rounded to int8 with a per-row scale max|x| / 127 (kept in float32)."""
    x = x.astype(ms.float32)
    scale = ops.maximum(ops.abs(x).max(axis=-1, keepdims=True) / QMAX, ms.Tensor(1e-12, ms.float32))
    return ops.clamp(ops.round(x / scale), -QMAX, QMAX) * scale


def _grouped_class(base_cls):
    def dense_weight(self):
        """(E, out, in) float32: the stack dequantized."""
        if self.quant_bits == 8:
            return self.quant_w.astype(ms.float32) * self.quant_scale.expand_dims(-1)
        e, n, k = self.quant_w.shape
        g = self.quant_scale.shape[-1]
        q = self.quant_w.astype(ms.float32).reshape(e, n, g, k // g)
        w = (q - self.quant_zero.expand_dims(-1)) * self.quant_scale.expand_dims(-1)
        return w.reshape(e, n, k)

    def grouped_input(self, x):
        if self.quant_act_bits == 8:
            return per_token_fake_quant(x)
        return x

    def construct(self, x):
        return self._bmm(self.grouped_input(x).astype(ms.float32), self.dense_weight())

    return type(f"Quant{base_cls.__name__}", (base_cls,), {
        "construct": construct, "dense_weight": dense_weight, "grouped_input": grouped_input, "__module__": __name__})


_CLASSES: dict = {}


def to_quant_grouped(cell, path: str, bits: int, q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None,
                     act_bits: int | None = None):
    """int8: q int8 (E, N, K), scale (E, N); int4: q (E, N, K) values 0..15, scale / zero (E, N, G)."""
    base = type(cell)
    if base not in _CLASSES:
        _CLASSES[base] = _grouped_class(base)
    del cell.weight
    cell.__class__ = _CLASSES[base]
    cell.quant_bits = int(bits)
    cell.quant_act_bits = None if act_bits is None else int(act_bits)
    cell.quant_w = Parameter(ms.Tensor(np.ascontiguousarray(q.astype(np.int8))), name=f"{path}.quant_w", requires_grad=False)
    cell.quant_scale = Parameter(ms.Tensor(np.ascontiguousarray(scale, np.float32)), name=f"{path}.quant_scale",
                                 requires_grad=False)
    cell.quant_zero = None
    if zero is not None:
        cell.quant_zero = Parameter(ms.Tensor(np.ascontiguousarray(zero, np.float32)), name=f"{path}.quant_zero",
                                    requires_grad=False)
    cell.is_quantized = True
    return cell
