"""Reading any checkpoint folder as a layout (`mft-checkpoint-layout` JSON).

Sources, in order: `layout.json` (mft checkpoints, also written by training),
`model.safetensors.index.json` (Hugging Face sharded folders), the folder's
`*.safetensors` files, or a single `.safetensors` file. Everything but the
first is one rank holding whole tensors, possibly spread over several files.
"""

from __future__ import annotations

import glob
import json
import os

from mft.errors import MftError
from mft.weights.safetensors import read_header

LAYOUT_FILE = "layout.json"
HF_INDEX = "model.safetensors.index.json"
FORMAT = "mft-checkpoint-layout"
# Files in a checkpoint folder that hold no model weights.
NOT_WEIGHTS = {"optimizer.safetensors"}


def whole_tensor_layout(files: dict[str, dict]) -> dict:
    """One rank, whole tensors; `files` maps file name -> its header."""
    tensors = {}
    for fname, header in files.items():
        for name, e in header.items():
            if name in tensors:
                raise MftError(f"{fname}: tensor {name!r} also appears in {tensors[name]['pieces'][0]['file']}")
            tensors[name] = {
                "shape": e["shape"], "dtype": e["dtype"], "split_axis": None,
                "pieces": [{"rank": 0, "file": fname, "offset": [0] * len(e["shape"]), "shape": e["shape"]}],
            }
    return {"format": FORMAT, "version": 1, "parallel": {"dp": 1, "tp": 1, "pp": 1, "ep": 1}, "tensors": dict(sorted(tensors.items()))}


def read_json(path: str):
    """The JSON in `path`; unreadable or malformed is an MftError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MftError(f"{path}: cannot read JSON: {e}") from None


def folder_layout(path: str) -> tuple[str, dict]:
    """(folder the layout's file names are relative to, layout dict)."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return os.path.dirname(os.path.abspath(path)), whole_tensor_layout({os.path.basename(path): read_header(path)[0]})
    if not os.path.isdir(path):
        raise MftError(f"{path}: no such checkpoint file or folder")
    lp = os.path.join(path, LAYOUT_FILE)
    if os.path.isfile(lp):
        layout = read_json(lp)
        if not isinstance(layout, dict) or layout.get("format") != FORMAT or not isinstance(layout.get("tensors"), dict):
            raise MftError(f"{lp}: not an mft checkpoint layout (\"format\": {FORMAT!r} with \"tensors\")")
        return path, layout
    ip = os.path.join(path, HF_INDEX)
    if os.path.isfile(ip):
        index = read_json(ip)
        wm = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(wm, dict):
            raise MftError(f"{ip}: no \"weight_map\" object")
        files = {}
        for fname in sorted(set(wm.values())):
            fp = os.path.join(path, fname)
            if not os.path.isfile(fp):
                raise MftError(f"{ip}: names {fname}, which does not exist")
            files[fname] = read_header(fp)[0]
        layout = whole_tensor_layout(files)
        for name, fname in wm.items():
            if name not in layout["tensors"]:
                raise MftError(f"{ip}: tensor {name!r} is mapped to {fname} but that file does not hold it")
        return path, layout
    names = [os.path.basename(f) for f in sorted(glob.glob(os.path.join(path, "*.safetensors")))]
    names = [n for n in names if n not in NOT_WEIGHTS]
    if not names:
        raise MftError(f"{path}: no layout.json, {HF_INDEX} or .safetensors files")
    return path, whole_tensor_layout({n: read_header(os.path.join(path, n))[0] for n in names})


def tensor_metas(layout: dict) -> dict[str, tuple[str, list[int]]]:
    """name -> (dtype, global shape) of every tensor of a layout."""
    return {n: (t["dtype"], list(t["shape"])) for n, t in layout["tensors"].items()}
