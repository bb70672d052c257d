"""GPTQ (Frantar et al., 2022) in numpy: quantize a weight column by column,
spreading each column's rounding error over the columns not yet quantized so
that the layer's output on the calibration inputs changes least.

With H = X^T X over the calibration inputs X (rows = tokens) of a linear
y = x W^T, the output error of changing W to Q is tr((W-Q) H (W-Q)^T). GPTQ
walks the columns in order; after rounding column i it updates the remaining
columns j > i by -err_i * Hinv[i, j] / Hinv[i, i], using the upper Cholesky
factor of H^-1 (which equals the sequence of those inverse updates). Columns
are processed in blocks; updates inside a block are immediate, updates to
later blocks are applied once per block as one matrix product.

int4 group parameters (scale, zero) are chosen when the walk reaches a
group's first column, from the already-updated weights of that group
(blocks are a multiple of the group size, so a group never spans blocks).
"""

from __future__ import annotations

import numpy as np

from mft.errors import MftError
from mft.quant import rtn


def prepare_inverse(h: np.ndarray, w: np.ndarray, damp: float) -> tuple[np.ndarray, np.ndarray]:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1, and w with
    the columns of never-active inputs zeroed (their H row is 0)."""
    h = np.array(h, dtype=np.float64)
    w = np.array(w, dtype=np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    diag_mean = float(np.mean(np.diag(h)))
    lam = damp * diag_mean
    eye = np.eye(h.shape[0])
    for _ in range(6):  # grow the damping if H is numerically not positive definite
        try:
            l_h = np.linalg.cholesky(h + lam * eye)
            h_inv = np.linalg.inv(l_h).T @ np.linalg.inv(l_h)  # (L L^T)^-1 = L^-T L^-1
            upper = np.linalg.cholesky(h_inv).T
            return upper, w
        except np.linalg.LinAlgError:
            lam = lam * 10 if lam > 0 else 1e-6 * max(diag_mean, 1.0)
    raise MftError("GPTQ: the calibration Hessian is not positive definite even with damping; use more --calib text")


def gptq_quantize(w: np.ndarray, h: np.ndarray, bits: int, group_size: int = -1, damp: float = 0.01, block: int = 128):
    """Returns (q, scales, zeros) in the same form as rtn.quantize_int8 (bits=8,
    per-channel symmetric; zeros None) or rtn.quantize_int4 (bits=4, groups)."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    n, k = w.shape
    upper, wq = prepare_inverse(h, w, damp)
    g = k if (bits == 8 or group_size <= 0) else group_size
    block = max(g, (block // g) * g) if bits == 4 else block
    q = np.zeros((n, k), dtype=np.float64)
    if bits == 8:
        scale8 = rtn.int8_scale(wq.astype(np.float32)).astype(np.float64)
        scales = scale8
        zeros = None
    else:
        scales = np.zeros((n, k // g), dtype=np.float64)
        zeros = np.zeros((n, k // g), dtype=np.float64)
    for b0 in range(0, k, block):
        b1 = min(b0 + block, k)
        w1 = wq[:, b0:b1].copy()
        err1 = np.zeros_like(w1)
        u1 = upper[b0:b1, b0:b1]
        for i in range(b1 - b0):
            col = b0 + i
            wi = w1[:, i]
            if bits == 8:
                qi = np.clip(np.rint(wi / scale8), -rtn.INT8_MAX, rtn.INT8_MAX)
                deq = qi * scale8
            else:
                if col % g == 0:
                    s, z = rtn.int4_params(w1[:, i:i + g].astype(np.float32))
                    scales[:, col // g], zeros[:, col // g] = s, z
                s, z = scales[:, col // g], zeros[:, col // g]
                qi = rtn.quantize_int4_column(wi, s, z)
                deq = (qi - z) * s
            q[:, col] = qi
            e = (wi - deq) / u1[i, i]
            w1[:, i:] -= np.outer(e, u1[i, i:])
            err1[:, i] = e
        wq[:, b1:] -= err1 @ upper[b0:b1, b1:]
    if bits == 8:
        return q.astype(np.int8), scales.astype(np.float32), None
    return q.astype(np.uint8), scales.astype(np.float32), zeros.astype(np.float32)
