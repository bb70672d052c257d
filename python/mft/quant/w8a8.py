"""W8A8 numerics in numpy: the reference the C++ kernel (mft._kernels.w8a8_matmul,
csrc/kernels/quant_matmul_w8a8.h) and the aot op are tested against.

Activations: dynamic, symmetric, one scale per token (row), as vLLM's
compressed-tensors W8A8 with `strategy: token, dynamic: true` computes them:
  scale = max|x| / 127 (1 for an all-zero row), q = round_half_even(x / scale) in [-127, 127].
Weights: int8, one scale per output channel (rtn.quantize_int8).
y = (float32(q @ w.T, exact integer sum) * x scale) * w scale.
"""

from __future__ import annotations

import numpy as np


def quantize_per_token(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (M, K) float32 -> (q int8 (M, K), scale float32 (M,))."""
    x = np.asarray(x, np.float32)
    amax = np.abs(x).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def w8a8_matmul_reference(x: np.ndarray, w: np.ndarray, w_scale: np.ndarray) -> np.ndarray:
    """x (M, K) float32, w int8 (N, K), w_scale (N,) -> y float32 (M, N), the kernel's exact result."""
    q, xs = quantize_per_token(x)
    acc = q.astype(np.int64) @ np.asarray(w, np.int64).T
    return (acc.astype(np.float32) * xs[:, None]) * np.asarray(w_scale, np.float32).reshape(1, -1)
