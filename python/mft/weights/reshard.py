"""Resharding checkpoints between layouts, and loading one rank's shards.

`reshard(src, dst, tp, pp, ep)` writes a new checkpoint folder: one
safetensors file per rank plus `layout.json` (or, for tp=pp=ep=1, a Hugging
Face folder: `model.safetensors` or `model-0000k-of-0000N.safetensors` +
index, which is also a valid mft layout). The Rust core moves the bytes
(parallel, memory-mapped, never the whole model in memory). The folder is
built under a temporary name and renamed into place at the end. A training
checkpoint's optimizer state and trainer_state.json come along (train_state.py).

`load_rank(src, tp=..., tp_rank=...)` is what distributed training calls: it
reads only the boxes that rank needs from whatever layout the source has.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from mft import _native
from mft.errors import MftError
from mft.json_files import write_json_atomic
from mft.weights.layout import HF_INDEX, LAYOUT_FILE, folder_layout, tensor_metas
from mft.weights.plans import Placer, Plan, target_dtype
from mft.weights.safetensors_format import DTYPES
from mft.weights.train_state import reshard_train_state

# Non-weight files a model folder carries along (config, tokenizer).
AUX_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja")
HF_METADATA = [("format", "pt")]


def _native_call(fn, *args):
    try:
        return fn(*args)
    except (ValueError, OSError) as e:
        raise MftError(str(e)) from None


def parse_size(text: str | int | None) -> int | None:
    """'5GB', '500MB', '2GiB', 1000 -> bytes."""
    if text is None or isinstance(text, int):
        return text
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    s = text.strip().upper()
    num = s.rstrip("KMGIB")
    try:
        value = float(num) * units[s[len(num):]]
    except (ValueError, KeyError):
        raise MftError(f"--max-shard-size {text!r}: expected a size like 5GB, 500MB or 2GiB") from None
    if value <= 0:
        raise MftError(f"--max-shard-size {text!r} must be positive")
    return int(value)


def hf_layout(src_layout: dict, dtype: str | None, max_shard_bytes: int | None) -> tuple[dict, dict | None]:
    """Whole tensors in HF-named files of at most max_shard_bytes (a bigger
    tensor gets a file of its own); returns (layout, index json or None)."""
    shards: list[list[str]] = [[]]
    size = 0
    sizes = {}
    for name, t in sorted(src_layout["tensors"].items()):
        dt = target_dtype(t["dtype"], dtype)
        n = int(np.prod(t["shape"], dtype=np.int64)) * DTYPES[dt].itemsize
        sizes[name] = n
        if max_shard_bytes and shards[-1] and size + n > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += n
    count = len(shards)
    fname = (lambda k: "model.safetensors") if count == 1 else (lambda k: f"model-{k + 1:05d}-of-{count:05d}.safetensors")
    tensors, weight_map = {}, {}
    for k, names in enumerate(shards):
        for name in names:
            t = src_layout["tensors"][name]
            weight_map[name] = fname(k)
            tensors[name] = {"shape": t["shape"], "dtype": target_dtype(t["dtype"], dtype), "split_axis": None,
                             "pieces": [{"rank": 0, "file": fname(k), "offset": [0] * len(t["shape"]), "shape": t["shape"]}]}
    layout = {"format": "mft-checkpoint-layout", "version": 1, "parallel": {"dp": 1, "tp": 1, "pp": 1, "ep": 1}, "tensors": tensors}
    index = {"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map} if count > 1 else None
    return layout, index


def reshard(src: str, dst: str, tp: int = 1, pp: int = 1, ep: int = 1, dtype: str | None = None,
            max_shard_size: str | int | None = None, plan: Plan | None = None) -> dict:
    """Writes `dst` (a new folder) from the checkpoint at `src`; returns stats."""
    src_dir, src_layout = folder_layout(src)
    dst = os.path.abspath(os.fspath(dst))
    if os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
        raise MftError(f"{dst}: already exists and is not empty; choose a new output folder")
    placer = Placer(tensor_metas(src_layout), tp, pp, ep, plan)
    index = None
    if (tp, pp, ep) == (1, 1, 1):
        dst_layout, index = hf_layout(src_layout, dtype, parse_size(max_shard_size))
    else:
        if max_shard_size is not None:
            raise MftError("--max-shard-size applies to tp=pp=ep=1 output (a Hugging Face folder)")
        dst_layout = placer.layout(dtype)
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(dst)}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        files, tensors, nbytes = _native_call(
            _native.reshard_execute, src_dir, json.dumps(src_layout), tmp, json.dumps(dst_layout), HF_METADATA)
        if os.path.isdir(src):
            for name in AUX_FILES:
                if os.path.isfile(os.path.join(src, name)):
                    shutil.copyfile(os.path.join(src, name), os.path.join(tmp, name))
            files += reshard_train_state(src, tmp, dst_layout)  # optimizer + trainer state, if any
        if index is not None:
            write_json_atomic(os.path.join(tmp, HF_INDEX), index, sort_keys=True)
        write_json_atomic(os.path.join(tmp, LAYOUT_FILE), dst_layout, sort_keys=True)
        if os.path.isdir(dst):
            os.rmdir(dst)  # empty (checked above)
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"files": files, "tensors": tensors, "bytes": nbytes, "parallel": dst_layout["parallel"]}


def _read(src_dir: str, src_layout: dict, requests: list[tuple[str, str, list[int], list[int]]]) -> dict[str, np.ndarray]:
    arrays = _native_call(_native.reshard_read, src_dir, json.dumps(src_layout), requests)
    return {name: raw.view(DTYPES[dt]).reshape(shape) for (name, dt, _, shape), raw in zip(requests, arrays)}


def load_rank(src: str, tp: int = 1, pp: int = 1, ep: int = 1, tp_rank: int = 0, pp_rank: int = 0, ep_rank: int = 0,
              dtype: str | None = None, plan: Plan | None = None) -> dict[str, np.ndarray]:
    """The tensors rank (tp_rank, pp_rank, ep_rank) of a (tp, pp, ep) run holds,
    as local shards (vocab padding rows are zero), read from any source layout.
    BF16/FP8 come back as their uint16/uint8 bit patterns."""
    for k, r, n in (("tp", tp_rank, tp), ("pp", pp_rank, pp), ("ep", ep_rank, ep)):
        if not 0 <= r < n:
            raise MftError(f"{k}_rank {r} is outside 0..{n - 1}")
    src_dir, src_layout = folder_layout(src)
    metas = tensor_metas(src_layout)
    placer = Placer(metas, tp, pp, ep, plan)
    requests = []
    for name in sorted(metas):
        for t, p, e, off, shp, _ in placer.boxes(name):
            if (t, p, e) == (tp_rank, pp_rank, ep_rank):
                requests.append((name, target_dtype(metas[name][0], dtype), off, shp))
    return _read(src_dir, src_layout, requests)


def load_full(src: str, dtype: str | None = None) -> dict[str, np.ndarray]:
    """Every tensor whole (merged from its pieces), from any layout."""
    src_dir, src_layout = folder_layout(src)
    requests = [(n, target_dtype(t["dtype"], dtype), [0] * len(t["shape"]), list(t["shape"])) for n, t in sorted(src_layout["tensors"].items())]
    return _read(src_dir, src_layout, requests)
