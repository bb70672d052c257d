"""Pure-numpy safetensors reader/writer.

The reference implementation: `mft.weights.safetensors` uses the Rust core
when it is built and this module's behaviour is what that core must match.
Format: 8-byte little-endian header length N, N bytes of JSON
({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}),
then the tensor bytes, offsets relative to the end of the header.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Mapping

import numpy as np

from mft.errors import MftError
from mft.weights.safetensors_format import DTYPES, NUMPY_TO_NAME, c_order

MAX_HEADER_BYTES = 100 * 1024 * 1024


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) widened to float32 exactly."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


class _DuplicateKey(Exception):
    """A header names one tensor twice (json's object hook raises it)."""


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_entry(path: str, name: str, entry) -> None:
    """dtype known, shape and offsets non-negative ints, bytes = dtype x shape."""
    try:
        dtype = DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        shape = entry["shape"]
        ok = isinstance(shape, list) and all(_is_count(d) for d in shape) and _is_count(begin) and _is_count(end)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise MftError(f"{path}: tensor {name!r}: malformed header entry {entry!r}")
    nbytes = dtype.itemsize
    for d in shape:
        nbytes *= d
    if end < begin or end - begin != nbytes:
        raise MftError(
            f"{path}: tensor {name!r}: offsets [{begin}, {end}) do not fit dtype "
            f"{entry['dtype']} x shape {shape} ({nbytes} bytes)"
        )


def _check_layout(path: str, header: dict, data_len: int) -> None:
    """Offsets must tile [0, data_len) exactly: in bounds, no overlap, no gaps."""
    pos = 0
    for name, entry in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        begin, end = entry["data_offsets"]
        if end > data_len:
            raise MftError(f"{path}: tensor {name!r}: offsets [{begin}, {end}) run past the end of the {data_len} data bytes")
        if begin < pos:
            raise MftError(f"{path}: tensor {name!r}: offsets [{begin}, {end}) overlap another tensor")
        if begin > pos:
            raise MftError(f"{path}: tensor {name!r}: gap of unused bytes before offset {begin}")
        pos = end
    if pos != data_len:
        raise MftError(f"{path}: tensors cover {pos} of the {data_len} data bytes (trailing bytes)")


def read_header(path: str) -> tuple[dict, dict, int]:
    """Returns (tensor entries, metadata, byte offset where data starts)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise MftError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise MftError(f"{path}: header length {n} exceeds the file size {size} or the limit")
        try:
            header = json.loads(f.read(n).decode("utf-8"), object_pairs_hook=_no_duplicates)
        except _DuplicateKey as e:
            raise MftError(f"{path}: key {e.args[0]!r} appears twice in the header") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MftError(f"{path}: header is not valid UTF-8 JSON: {e}") from None
    if not isinstance(header, dict):
        raise MftError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise MftError(f"{path}: __metadata__ must be an object of strings, got {metadata!r}")
    data_len = size - 8 - n
    for name, entry in header.items():
        _check_entry(path, name, entry)
    _check_layout(path, header, data_len)
    return header, metadata, 8 + n


def load_file(path: str, widen_bf16: bool = True) -> dict[str, np.ndarray]:
    """Reads every tensor (memory-mapped, copied out) into a name -> array dict."""
    if not os.path.isfile(path):
        raise MftError(f"{path}: no such safetensors file")
    header, _, start = read_header(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        arr = np.frombuffer(mm[start + begin : start + end], dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"])
        if entry["dtype"] == "BF16" and widen_bf16:
            arr = bf16_bits_to_f32(arr)
        out[name] = np.array(arr)
    return out


def save_file(tensors: Mapping[str, np.ndarray], path: str, metadata: Mapping[str, str] | None = None) -> None:
    """Writes to `path + '.tmp'` and renames into place (never half-written)."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    arrays = []
    for name in sorted(tensors):
        if name == "__metadata__":
            raise MftError(f"{path}: tensor name '__metadata__' is reserved for metadata")
        arr = c_order(tensors[name])
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dtype not in NUMPY_TO_NAME:
            raise MftError(f"{path}: tensor {name!r}: dtype {arr.dtype} cannot be stored in safetensors")
        arr = arr.astype(dtype, copy=False)
        header[name] = {"dtype": NUMPY_TO_NAME[dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        arrays.append(arr)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # keep tensor data 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for arr in arrays:
            f.write(arr.tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
