"""Carrying a training checkpoint's state through a reshard.

`optimizer.safetensors` holds `exp_avg.<name>` / `exp_avg_sq.<name>` for every
model tensor `<name>` (the trainer names parameters by their Hugging Face
names) plus replicated scalars such as `optimizer_step`. Each moment tensor
gets exactly the pieces of its model tensor, in files named like the model's
(`model-tp00-...` -> `optimizer-tp00-...`); everything else is stored once in
rank 0's file. A sharded output records this in `optimizer_layout.json`, which
a later reshard reads back (merge)."""

from __future__ import annotations

import copy
import json
import os
import shutil

from mft import _native
from mft.errors import MftError
from mft.weights.layout import FORMAT, read_json, whole_tensor_layout
from mft.weights.safetensors import read_header

OPTIMIZER_FILE = "optimizer.safetensors"
OPTIMIZER_LAYOUT = "optimizer_layout.json"
TRAIN_FILES = ("trainer_state.json",)
MOMENTS = ("exp_avg.", "exp_avg_sq.")


def optimizer_source(src: str) -> dict | None:
    """The optimizer state's layout in `src` (a folder), or None if it has none."""
    if not os.path.isdir(src):
        return None
    lp = os.path.join(src, OPTIMIZER_LAYOUT)
    if os.path.isfile(lp):
        layout = read_json(lp)
        if not isinstance(layout, dict) or layout.get("format") != FORMAT or not isinstance(layout.get("tensors"), dict):
            raise MftError(f"{lp}: not an mft checkpoint layout")
        return layout
    fp = os.path.join(src, OPTIMIZER_FILE)
    if os.path.isfile(fp):
        return whole_tensor_layout({OPTIMIZER_FILE: read_header(fp)[0]})
    return None


def _optimizer_file(model_file: str, sharded: bool) -> str:
    return "optimizer" + model_file[len("model"):] if sharded else OPTIMIZER_FILE


def optimizer_layout(src_layout: dict, model_layout: dict) -> dict:
    """Where each optimizer tensor goes, following `model_layout` (the resharded model's)."""
    sharded = model_layout["parallel"] != {"dp": 1, "tp": 1, "pp": 1, "ep": 1}
    rank0 = sorted({p["file"] for t in model_layout["tensors"].values() for p in t["pieces"] if p["rank"] == 0})
    tensors = {}
    for name, t in src_layout["tensors"].items():
        model_name = next((name[len(m):] for m in MOMENTS if name.startswith(m)), None)
        target = model_layout["tensors"].get(model_name) if model_name else None
        if model_name and target is None:
            raise MftError(f"{OPTIMIZER_FILE}: tensor {name!r} has no model tensor {model_name!r} to follow")
        if target is not None:
            if list(target["shape"]) != list(t["shape"]):
                raise MftError(f"{OPTIMIZER_FILE}: tensor {name!r} has shape {t['shape']} but model tensor {model_name!r} has {target['shape']}")
            entry = copy.deepcopy(target)
        else:  # replicated scalar/state: one copy with rank 0
            entry = {"shape": list(t["shape"]), "split_axis": None,
                     "pieces": [{"rank": 0, "file": rank0[0] if rank0 else "model.safetensors", "offset": [0] * len(t["shape"]), "shape": list(t["shape"])}]}
        entry["dtype"] = t["dtype"]  # optimizer state keeps its precision
        for p in entry["pieces"]:
            p["file"] = _optimizer_file(p["file"], sharded)
        tensors[name] = entry
    return {"format": FORMAT, "version": 1, "parallel": dict(model_layout["parallel"]), "tensors": dict(sorted(tensors.items()))}


def reshard_train_state(src: str, tmp: str, model_layout: dict) -> int:
    """Writes the optimizer files (+ layout when sharded) and copies trainer
    state from `src` into `tmp`; returns the number of optimizer files."""
    src_opt = optimizer_source(src)
    for name in TRAIN_FILES:
        if os.path.isfile(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), os.path.join(tmp, name))
    if src_opt is None:
        return 0
    dst_opt = optimizer_layout(src_opt, model_layout)
    try:
        files, _, _ = _native.reshard_execute(src, json.dumps(src_opt), tmp, json.dumps(dst_opt), [])
    except (ValueError, OSError) as e:
        raise MftError(str(e)) from None
    if dst_opt["parallel"] != {"dp": 1, "tp": 1, "pp": 1, "ep": 1}:
        path = os.path.join(tmp, OPTIMIZER_LAYOUT)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(dst_opt, f, indent=2, sort_keys=True)
        os.replace(path + ".tmp", path)
    return files
