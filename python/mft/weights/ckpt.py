"""MindSpore `.ckpt` <-> safetensors, through MindSpore's own checkpoint API.

numpy has no bfloat16, so BF16 crosses as float32 (exact: every bf16 is a
float32) and is narrowed back by the Rust conversion. FP8 has no MindSpore
CPU dtype and is refused by name. Both directions write to a temporary name
and rename into place.
"""

from __future__ import annotations

import os

import numpy as np

from mft import _native
from mft.errors import MftError
from mft.weights.safetensors import load_file, save_file


def ckpt_to_safetensors(src: str, dst: str) -> int:
    """Writes the parameters of a MindSpore `.ckpt` to `dst` (.safetensors, bf16 kept as BF16); returns the tensor count."""
    import mindspore as ms

    if not os.path.isfile(src):
        raise MftError(f"{src}: no such .ckpt file")
    try:
        params = ms.load_checkpoint(src)
    except Exception as e:  # MindSpore raises ValueError/RuntimeError with its own wording
        raise MftError(f"{src}: not a readable MindSpore checkpoint: {e}") from None
    tensors, bf16 = {}, []
    for name, p in params.items():
        if p.dtype == ms.bfloat16:
            bits = _native.float_convert(p.astype(ms.float32).asnumpy().reshape(-1).view(np.uint8), "F32", "BF16")
            tensors[name] = bits.view("<u2").reshape(p.shape)
            bf16.append(name)
        else:
            tensors[name] = p.asnumpy()
    _save_with_bf16(tensors, bf16, dst)
    return len(tensors)


def _save_with_bf16(tensors: dict, bf16: list[str], dst: str) -> None:
    if not bf16:
        save_file(tensors, dst, metadata={"format": "pt"})
        return
    # save_file takes numpy dtypes; BF16 goes through the raw writer.
    from mft.weights.safetensors import _native_call
    from mft.weights.safetensors_format import NUMPY_TO_NAME
    from mft.weights.safetensors_format import c_order

    items = []
    for name in sorted(tensors):
        arr = c_order(tensors[name])
        dt = "BF16" if name in bf16 else NUMPY_TO_NAME.get(arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype)
        if dt is None:
            raise MftError(f"{dst}: tensor {name!r}: dtype {arr.dtype} cannot be stored in safetensors")
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        items.append((name, dt, list(arr.shape), c_order(arr).reshape(-1).view(np.uint8)))
    _native_call(_native.safetensors_save, dst, items, [("format", "pt")])


def safetensors_to_ckpt(src: str, dst: str) -> int:
    """Writes a .safetensors file as a MindSpore `.ckpt` (MindSpore's own saver); returns the tensor count."""
    import mindspore as ms

    from mft.weights.safetensors import read_header

    header, _, _ = read_header(src)
    raw = load_file(src, widen_bf16=True)
    params = []
    for name in sorted(raw):
        dt = header[name]["dtype"]
        if dt.startswith("F8"):
            raise MftError(f"{src}: tensor {name!r}: {dt} has no MindSpore checkpoint dtype; convert it to BF16/F16 first")
        t = ms.Tensor(raw[name])
        if dt == "BF16":
            t = t.astype(ms.bfloat16)
        params.append({"name": name, "data": t})
    base = dst[:-5] if dst.endswith(".ckpt") else dst
    tmp = f"{base}.tmp-{os.getpid()}.ckpt"  # MindSpore insists on the .ckpt suffix
    try:
        ms.save_checkpoint(params, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return len(params)


def convert(src: str, dst: str, dtype: str | None = None) -> int:
    """By suffix: .ckpt -> .safetensors, .safetensors -> .ckpt, or
    .safetensors -> .safetensors with --dtype."""
    s, d = src.endswith(".ckpt"), dst.endswith(".ckpt")
    if s and dst.endswith(".safetensors") and dtype is None:
        return ckpt_to_safetensors(src, dst)
    if src.endswith(".safetensors") and d and dtype is None:
        return safetensors_to_ckpt(src, dst)
    if src.endswith(".safetensors") and dst.endswith(".safetensors"):
        if dtype is None:
            raise MftError("converting .safetensors to .safetensors needs --dtype")
        return _convert_dtype(src, dst, dtype)
    raise MftError(f"convert {src} -> {dst}: expected .ckpt -> .safetensors, .safetensors -> .ckpt, "
                   "or .safetensors -> .safetensors with --dtype (for folders use `mft weights reshard --dtype`)")


def _convert_dtype(src: str, dst: str, dtype: str) -> int:
    import json

    from mft.weights.layout import folder_layout
    from mft.weights.plans import target_dtype
    from mft.weights.reshard import HF_METADATA, _native_call as call

    src_dir, layout = folder_layout(src)
    out = {"format": layout["format"], "version": 1, "parallel": layout["parallel"], "tensors": {}}
    for n, t in layout["tensors"].items():
        out["tensors"][n] = dict(t, dtype=target_dtype(t["dtype"], dtype), pieces=[dict(p, file=os.path.basename(dst)) for p in t["pieces"]])
    dst_dir = os.path.dirname(os.path.abspath(dst))
    call(_native.reshard_execute, src_dir, json.dumps(layout), dst_dir, json.dumps(out), HF_METADATA)
    return len(out["tensors"])
