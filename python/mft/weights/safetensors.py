"""safetensors I/O used across mft: `load_file`, `save_file`, `read_header`.

Backed by the Rust core (`mft._native`: strict header checks, mmap reads,
temp-name-and-rename writes). `mft.weights.safetensors_ref` is the pure-numpy
reference with the same names and behaviour; tests hold the two to parity.
Tensor bytes cross the boundary as flat uint8 arrays (filled in parallel
with the GIL released) and are viewed here as their numpy dtype;
`load_file(..., copy=False)` instead returns read-only zero-copy views of
the memory-mapped file (header validated by the Rust parser first).
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from mft import _native
from mft.errors import MftError
from mft.weights.safetensors_format import DTYPES, NUMPY_TO_NAME
from mft.weights.safetensors_format import c_order

__all__ = ["load_file", "save_file", "read_header"]


def _native_call(fn, *args):
    try:
        return fn(*args)
    except (ValueError, OSError) as e:
        raise MftError(str(e)) from None


def read_header(path: str) -> tuple[dict, dict, int]:
    """Returns (tensor entries, metadata, byte offset where data starts)."""
    entries, metadata, start = _native_call(_native.safetensors_read_header, os.fspath(path))
    header = {
        name: {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, end]}
        for name, dtype, shape, (begin, end) in entries
    }
    return header, dict(metadata), start


def load_file(path: str, widen_bf16: bool = True, copy: bool = True) -> dict[str, np.ndarray]:
    """Reads every tensor into a name -> array dict (BF16 -> float32 unless widen_bf16=False,
    which keeps the uint16 bit patterns; FP8 comes back as uint8 bit patterns).
    copy=False: read-only views into the memory-mapped file, no bytes copied
    (BF16 then stays as uint16 bits)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MftError(f"{path}: no such safetensors file")
    if not copy:
        header, _, start = read_header(path)
        mm = np.memmap(path, dtype=np.uint8, mode="r")
        return {
            name: mm[start + e["data_offsets"][0] : start + e["data_offsets"][1]].view(DTYPES[e["dtype"]]).reshape(e["shape"])
            for name, e in header.items()
        }
    out = {}
    for name, dtype, shape, raw in _native_call(_native.safetensors_load, path, widen_bf16):
        np_dtype = np.dtype("<f4") if dtype == "F32" else DTYPES[dtype]
        out[name] = raw.view(np_dtype).reshape(shape)
    return out


def save_file(tensors: Mapping[str, np.ndarray], path: str, metadata: Mapping[str, str] | None = None) -> None:
    """Writes to `path + '.tmp'` and renames into place (never half-written)."""
    path = os.fspath(path)
    items = []
    for name in sorted(tensors):
        arr = c_order(tensors[name])
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dtype not in NUMPY_TO_NAME:
            raise MftError(f"{path}: tensor {name!r}: dtype {arr.dtype} cannot be stored in safetensors")
        arr = c_order(arr.astype(dtype, copy=False))
        items.append((name, NUMPY_TO_NAME[dtype], list(arr.shape), arr.reshape(-1).view(np.uint8)))
    meta = [(str(k), str(v)) for k, v in (metadata or {}).items()]
    _native_call(_native.safetensors_save, path, items, meta)
