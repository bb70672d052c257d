"""`QuantLinear`: a model's `_Linear` turned, in place, into a weight-only
quantized linear that runs the C++ dequantize-matmul kernel
(mft.ops.quant_matmul). Its float `weight` is gone; it holds
`quant_w` (int8 (N, K) or uint8 (N, K/2) int4 runs), `quant_scale` and, for
int4, `quant_zero` (float32 (N, G)), all frozen. Bias stays `bias` (float).
With `quant_act_bits == 8` (W8A8) the input is quantized to int8 per token and
multiplied in int8 (mft.ops.quant_matmul.quant_matmul_w8a8).
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import Parameter

from mft.ops.quant_matmul import quant_matmul_int4, quant_matmul_int8, quant_matmul_w8a8

QUANT_PARAM_MARK = ".quant_"  # models.base skips these in the HF layout


def _quant_class(base_cls):
    def construct(self, x):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        # Always the C++ kernel. (A shape-dependent switch to dequantize + MatMul for prefill-sized
        # inputs was measured to put the dequantization into the compiled decode step as well.)
        fused = self.quant_fused
        if self.quant_act_bits == 8:  # W8A8: x to int8 per token inside the op
            y = quant_matmul_w8a8(x2, self.quant_w, self.quant_scale, fused=fused)
        elif self.quant_bits == 8:
            y = quant_matmul_int8(x2, self.quant_w, self.quant_scale, fused=fused)
        else:
            y = quant_matmul_int4(x2, self.quant_w, self.quant_scale, self.quant_zero, fused=fused)
        if self.bias is not None:
            y = y + self.bias.astype(ms.float32)
        y = y.reshape(shape[:-1] + (self.out_features,))
        return y if self.compute_dtype is None else y.astype(self.compute_dtype)

    return type(f"Quant{base_cls.__name__}", (base_cls,), {"construct": construct, "__module__": __name__})


_CLASSES: dict = {}


def to_quant_linear(cell, path: str, bits: int, w: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, fused: bool = True,
                    act_bits: int | None = None):
    """Turns `cell` (a _Linear at `path`) into a quantized linear, in place.
    int8: w int8 (N, K), scale (N,); int4: w uint8 (N, K/2) kernel runs, scale/zero (N, G).
    act_bits=8 (int8 weights only): activations are quantized per token too (W8A8)."""
    base = type(cell)
    if base not in _CLASSES:
        _CLASSES[base] = _quant_class(base)
    del cell.weight  # the float weight is not kept
    cell.__class__ = _CLASSES[base]
    cell.quant_bits = int(bits)
    cell.quant_act_bits = None if act_bits is None else int(act_bits)
    cell.quant_fused = bool(fused)
    cell.quant_w = Parameter(ms.Tensor(np.ascontiguousarray(w)), name=f"{path}.quant_w", requires_grad=False)
    cell.quant_scale = Parameter(ms.Tensor(np.ascontiguousarray(scale, dtype=np.float32)), name=f"{path}.quant_scale", requires_grad=False)
    if zero is not None:
        cell.quant_zero = Parameter(ms.Tensor(np.ascontiguousarray(zero, dtype=np.float32)), name=f"{path}.quant_zero", requires_grad=False)
    else:
        cell.quant_zero = None
    cell.is_quantized = True
    return cell
