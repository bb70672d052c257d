"""The safetensors format's dtype tables and array layout rule, shared by the
Rust-backed I/O (`safetensors.py`, `ckpt.py`, `reshard.py`) and the numpy
reference (`safetensors_ref.py`, test-only)."""

from __future__ import annotations

import numpy as np

# safetensors dtype name -> numpy dtype. BF16 has no numpy dtype: it is read
# as uint16 bit patterns and widened to float32 (see `bf16_bits_to_f32`).
DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
    # fp8 has no numpy dtype either: read as raw uint8 bit patterns.
    "F8_E4M3": np.dtype("u1"),
    "F8_E5M2": np.dtype("u1"),
}
NUMPY_TO_NAME = {
    np.dtype("<f8"): "F64",
    np.dtype("<f4"): "F32",
    np.dtype("<f2"): "F16",
    np.dtype("<i8"): "I64",
    np.dtype("<i4"): "I32",
    np.dtype("<i2"): "I16",
    np.dtype("i1"): "I8",
    np.dtype("u1"): "U8",
    np.dtype("?"): "BOOL",
}


def c_order(x) -> np.ndarray:
    """x as a C-contiguous array (np.ascontiguousarray would turn a 0-d array into shape (1,))."""
    arr = np.asarray(x)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")
