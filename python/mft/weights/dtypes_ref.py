"""numpy reference for the Rust float conversions (`mft._native.float_convert`).

Values go through float64 and round once, to nearest-even, into the target;
overflow gives inf, or NaN for F8_E4M3 (the "fn" variant has no inf). Small
formats are described by (exponent bits, mantissa bits, finite_only).
Arrays in and out are raw little-endian bytes (uint8), as stored in files.
"""

from __future__ import annotations

import numpy as np

MINI = {"F16": (5, 10, False), "BF16": (8, 7, False), "F8_E4M3": (4, 3, True), "F8_E5M2": (5, 2, False)}
NATIVE = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4")}
BITS = {"F16": np.dtype("<u2"), "BF16": np.dtype("<u2"), "F8_E4M3": np.dtype("u1"), "F8_E5M2": np.dtype("u1")}
FLOATS = set(MINI) | set(NATIVE)


def _decode(name: str, bits: np.ndarray) -> np.ndarray:
    e_bits, m_bits, finite_only = MINI[name]
    bias = (1 << (e_bits - 1)) - 1
    b = bits.astype(np.int64)
    sign = np.where((b >> (e_bits + m_bits)) & 1, -1.0, 1.0)
    e = (b >> m_bits) & ((1 << e_bits) - 1)
    m = (b & ((1 << m_bits) - 1)).astype(np.float64)
    top = (1 << e_bits) - 1
    val = np.where(e == 0, m / 2**m_bits * 2.0 ** (1 - bias), (1 + m / 2**m_bits) * np.exp2((e - bias).astype(np.float64)))
    if finite_only:
        val = np.where((e == top) & (m == 2**m_bits - 1), np.nan, val)
    else:
        val = np.where(e == top, np.where(m == 0, np.inf, np.nan), val)
    return sign * val


def _encode(name: str, x: np.ndarray) -> np.ndarray:
    e_bits, m_bits, finite_only = MINI[name]
    bias = (1 << (e_bits - 1)) - 1
    top = (1 << e_bits) - 1
    sign = np.signbit(x).astype(np.int64) << (e_bits + m_bits)
    nan = (top << m_bits) | ((1 << m_bits) - 1 if finite_only else 1 << (m_bits - 1))
    overflow = nan if finite_only else top << m_bits
    if finite_only:
        max_finite = (1 + (2**m_bits - 2) / 2**m_bits) * 2.0 ** (top - bias)
    else:
        max_finite = (1 + (2**m_bits - 1) / 2**m_bits) * 2.0 ** (top - 1 - bias)
    a = np.abs(x)
    finite = np.isfinite(a)
    a0 = np.where(finite, a, 0.0)
    min_normal = 2.0 ** (1 - bias)
    _, fe = np.frexp(a0)
    e = np.where(a0 < min_normal, 1 - bias, fe - 1)
    quantum = np.exp2((e - m_bits).astype(np.float64))
    v = np.round(a0 / quantum) * quantum  # np.round: halves to even
    _, ve = np.frexp(v)
    ve = ve - 1
    normal = ((ve + bias).astype(np.int64) << m_bits) | ((v / np.exp2(ve.astype(np.float64)) - 1) * 2**m_bits).astype(np.int64)
    sub = (v / 2.0 ** (1 - bias - m_bits)).astype(np.int64)
    out = np.where(v < min_normal, sub, normal)
    out = np.where(v > max_finite, overflow, out)
    out = np.where(np.isinf(a), overflow, out)
    out = np.where(np.isnan(x), nan, out | sign)
    return out


def convert(data: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Raw bytes of `src` elements -> raw bytes of `dst` elements."""
    if src not in FLOATS or dst not in FLOATS:
        raise ValueError(f"cannot convert {src} to {dst}: only float dtypes convert")
    raw = np.ascontiguousarray(data, dtype=np.uint8)
    if src == dst:  # bytes pass through untouched (NaN payloads included)
        return raw.copy()
    x = raw.view(NATIVE[src]).astype(np.float64) if src in NATIVE else _decode(src, raw.view(BITS[src]))
    if dst in NATIVE:
        out = x.astype(NATIVE[dst])
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            out = _encode(dst, x).astype(BITS[dst])
    return out.view(np.uint8)
