"""Round-to-nearest quantizers (numpy) and their exact dequantization.

int8: symmetric, one scale per output channel (row of the (out, in) weight),
q in [-127, 127], w ~= q * scale.
int4: asymmetric, one (scale, zero) per `group_size` consecutive input
columns of a row, q in [0, 15], w ~= (q - zero) * scale. The range always
contains 0 (GPTQ's convention) and zero is kept in [1, 15] so the GPTQ v1
file layout, which stores zero - 1 in four bits, can hold it.
Scales are rounded to float16 here, because that is how they are stored.
"""

from __future__ import annotations

import numpy as np

INT8_MAX = 127
INT4_MAX = 15


def _f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


def int8_scale(w: np.ndarray) -> np.ndarray:
    """(N,) per-row scale for an (N, K) weight; all-zero rows get scale 1."""
    amax = np.abs(w).max(axis=1).astype(np.float32)
    scale = amax / INT8_MAX
    scale[scale == 0] = 1.0
    return scale


def quantize_int8(w: np.ndarray, scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(q int8 (N, K), scale float32 (N,))."""
    w = np.asarray(w, np.float32)
    scale = int8_scale(w) if scale is None else scale
    q = np.clip(np.rint(w / scale[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def dequantize_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * np.asarray(scale, np.float32).reshape(-1)[:, None]


def int4_params(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero) per row of w (R, g) (one group per row): float32 scale
    (fp16-representable), integer-valued float32 zero in [1, 15]."""
    w = np.asarray(w, np.float32)
    lo = np.minimum(w.min(axis=1), 0.0)
    hi = np.maximum(w.max(axis=1), 0.0)
    scale = (hi - lo) / INT4_MAX
    zero = np.rint(-lo / np.where(scale == 0, 1.0, scale))
    # zero == 0 means the group has no negative values: spend one step below 0
    # so zero can be 1 (GPTQ v1 files cannot store a zero point of 0).
    nonneg = zero < 1
    scale = np.where(nonneg, hi / (INT4_MAX - 1), scale)
    zero = np.clip(np.where(nonneg, 1.0, zero), 1, INT4_MAX)
    scale = _f16(scale)
    scale[scale == 0] = 1.0
    return scale.astype(np.float32), zero.astype(np.float32)


def quantize_int4_column(w: np.ndarray, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """Integer codes (as float) of w with per-element scale/zero broadcastable to it."""
    return np.clip(np.rint(w / scale) + zero, 0, INT4_MAX)


def group_count(in_features: int, group_size: int) -> int:
    return 1 if group_size <= 0 else in_features // group_size


def quantize_int4(w: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q uint8 (N, K) in [0, 15], scales float32 (N, G), zeros float32 (N, G)).
    group_size <= 0 means one group per row."""
    w = np.asarray(w, np.float32)
    n, k = w.shape
    g = k if group_size <= 0 else group_size
    groups = w.reshape(n, k // g, g)
    scale, zero = int4_params(groups.reshape(-1, g))
    scale = scale.reshape(n, k // g)
    zero = zero.reshape(n, k // g)
    q = quantize_int4_column(groups, scale[:, :, None], zero[:, :, None]).reshape(n, k).astype(np.uint8)
    return q, scale, zero


def dequantize_int4(q: np.ndarray, scales: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """w = (q - zero) * scale, the group size implied by scales' second axis."""
    n, k = q.shape
    groups = scales.shape[1]
    g = k // groups
    deq = (q.reshape(n, groups, g).astype(np.float32) - zeros[:, :, None]) * scales[:, :, None]
    return deq.reshape(n, k)
