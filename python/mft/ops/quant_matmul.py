"""Weight-only quantized matmul: y = x @ dequant(W).T, W packed as int8 or int4.

Layouts (csrc/kernels/quant_matmul.h, mft.quant.layout):
- int8: w int8 (N, K), scale float32 (N,): W = w * scale[:, None]
- int4: w uint8 (N, K/2) in 16-column runs, scales / zeros float32 (N, G):
  W[n, k] = (q[n, k] - zeros[n, g]) * scales[n, g], g = k // (K / G)

- w8a8 (SmoothQuant inference): w int8 (N, K), scale float32 (N,) as for int8, and
  x quantized per token inside the op: xs = max|x row| / 127, q = round(x / xs)
  in [-127, 127]; y = (q @ w.T, int32) * xs * scale  (csrc/kernels/quant_matmul_w8a8.h)

`quant_matmul_int8(x, w, scale, fused=True)` / `quant_matmul_int4(...)` /
`quant_matmul_w8a8(x, w, scale)` run the
C++ kernels as MindSpore aot ops (x float32 (..., K) -> (..., N)); `fused=False`
is the pure-MindSpore reference (dequantize, then MatMul), used where the
kernels cannot run (e.g. Ascend) and as the parity reference.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import ops

from mft.errors import MftError
from mft.ops import registry

INT8_OP = "mft.quant_matmul_int8"
INT4_OP = "mft.quant_matmul_int4"
W8A8_OP = "mft.quant_matmul_w8a8"


def _out_shape_int8(x_shape, w_shape, scale_shape):
    if len(w_shape) != 2 or len(scale_shape) != 1:
        raise MftError(f"quant_matmul_int8: w must be (N, K) and scale (N,), got {tuple(w_shape)} and {tuple(scale_shape)}")
    if x_shape[-1] >= 0 and w_shape[1] >= 0 and x_shape[-1] != w_shape[1]:
        raise MftError(f"quant_matmul_int8: x's last dimension {x_shape[-1]} != weight in-features {w_shape[1]}")
    return list(x_shape[:-1]) + [w_shape[0]]


def _out_shape_int4(x_shape, w_shape, scales_shape, zeros_shape):
    if len(w_shape) != 2 or len(scales_shape) != 2 or list(scales_shape) != list(zeros_shape):
        raise MftError(f"quant_matmul_int4: w must be (N, K/2), scales and zeros (N, G); got {tuple(w_shape)}, "
                       f"{tuple(scales_shape)}, {tuple(zeros_shape)}")
    if x_shape[-1] >= 0 and w_shape[1] >= 0 and x_shape[-1] != 2 * w_shape[1]:
        raise MftError(f"quant_matmul_int4: x's last dimension {x_shape[-1]} != weight in-features {2 * w_shape[1]}")
    return list(x_shape[:-1]) + [w_shape[0]]


def _out_dtype(x_dtype, *_):
    return ms.float32


def fused_ops():
    """(int8, int4, w8a8) aot primitives; MftError if the C++ library is missing or the device is not CPU."""
    global _INT8, _INT4, _W8A8
    lib = registry.kernels_library()
    _INT8 = registry.register_aot_op(INT8_OP, lib, "MftQuantMatmulInt8", out_shape=_out_shape_int8, out_dtype=_out_dtype)
    _INT4 = registry.register_aot_op(INT4_OP, lib, "MftQuantMatmulInt4", out_shape=_out_shape_int4, out_dtype=_out_dtype)
    _W8A8 = registry.register_aot_op(W8A8_OP, lib, "MftQuantMatmulW8A8", out_shape=_out_shape_int8, out_dtype=_out_dtype)
    return _INT8, _INT4, _W8A8


_INT8 = _INT4 = _W8A8 = None
registry.build_at_import(fused_ops)


def dequantize_int8_reference(w, scale):
    """int8 (N, K) weights times their per-row scales, float32 (N, K), composed MindSpore ops."""
    return w.astype(ms.float32) * scale.reshape(-1, 1)


def dequantize_int4_reference(w, scales, zeros):
    """(N, K/2) uint8 runs -> (N, K) float32, composed MindSpore ops."""
    n, half = w.shape
    runs = w.astype(ms.int32).reshape(n, half // 8, 1, 8)
    high = ops.floor_div(runs, 16)  # bytes are 0..255: the high nibble
    low = runs - high * 16
    q = ops.concat((low, high), axis=2).reshape(n, half * 2).astype(ms.float32)
    groups = scales.shape[1]
    q = q.reshape(n, groups, -1)
    return ((q - zeros.reshape(n, groups, 1)) * scales.reshape(n, groups, 1)).reshape(n, half * 2)


def _matmul_t(x, w):
    shape = x.shape
    y = ops.matmul(x.reshape(-1, shape[-1]), w.T)
    return y.reshape(shape[:-1] + (w.shape[0],))


def quant_matmul_int8(x, w, scale, fused: bool = True):
    """x (M, K) @ dequantized int8 W (N, K)^T -> float32 (M, N): the C++ kernel (fused) or the composed reference."""
    if not fused:
        return _matmul_t(x.astype(ms.float32), dequantize_int8_reference(w, scale))
    if _INT8 is None:
        fused_ops()
    return _INT8(x.astype(ms.float32), w, scale)


def quant_matmul_int4(x, w, scales, zeros, fused: bool = True):
    """x (M, K) @ dequantized int4 W (packed (N, K/2), group scales/zeros)^T -> float32 (M, N): the C++ kernel or the reference."""
    if not fused:
        return _matmul_t(x.astype(ms.float32), dequantize_int4_reference(w, scales, zeros))
    if _INT4 is None:
        fused_ops()
    return _INT4(x.astype(ms.float32), w, scales, zeros)


def quantize_per_token_reference(x):
    """x (M, K) float32 -> (codes as float32 in [-127, 127], scale (M, 1)): round(x / (max|x| / 127))."""
    amax = ops.abs(x).max(axis=-1, keepdims=True)
    scale = ops.where(amax > 0, amax / 127.0, ops.ones_like(amax))
    return ops.clip_by_value(ops.round(x / scale), -127.0, 127.0), scale


def quant_matmul_w8a8(x, w, scale, fused: bool = True):
    """W8A8: x quantized to int8 per token, int8 w (N, K) per channel, int32 accumulation."""
    if not fused:
        shape = x.shape
        q, xs = quantize_per_token_reference(x.astype(ms.float32).reshape(-1, shape[-1]))
        y = ops.matmul(q, w.astype(ms.float32).T) * xs * scale.reshape(1, -1)
        return y.reshape(shape[:-1] + (w.shape[0],))
    if _W8A8 is None:
        fused_ops()
    return _W8A8(x.astype(ms.float32), w, scale)
