"""Hugging Face checkpoint folders: config.json + model.safetensors (or sharded with an index).

Every write goes to a temporary name and is renamed into place.
"""

from __future__ import annotations

import os

import numpy as np

from mft.errors import MftError
from mft.json_files import read_json_object, write_json_atomic  # write_json_atomic: quant.writer uses it from here
from mft.weights.safetensors import load_file, save_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"


def read_config(folder: str) -> dict:
    """The config.json of a model folder as a dict; MftError naming the folder when it is missing or malformed."""
    if not os.path.isdir(folder):
        raise MftError(f"{folder}: not a directory (expected a model folder with config.json and model.safetensors)")
    path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(path):
        raise MftError(f"{folder}: no {CONFIG_NAME} in this model folder")
    return read_json_object(path)


def read_weights(folder: str) -> tuple[dict[str, np.ndarray], str]:
    """All tensors of the folder and a description of where they came from (for messages)."""
    single = os.path.join(folder, WEIGHTS_NAME)
    index_path = os.path.join(folder, INDEX_NAME)
    if os.path.isfile(single):
        return load_file(single), single
    if not os.path.isfile(index_path):
        raise MftError(f"{folder}: no weights in this model folder (expected {WEIGHTS_NAME} or {INDEX_NAME})")
    index = read_json_object(index_path)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise MftError(f"{index_path}: missing or empty 'weight_map'")
    tensors: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = os.path.join(folder, str(shard))
        if os.path.basename(str(shard)) != str(shard) or not os.path.isfile(shard_path):
            raise MftError(f"{index_path}: shard {shard!r} listed in weight_map is not a file in {folder}")
        for name, arr in load_file(shard_path).items():
            if weight_map.get(name) != shard:
                raise MftError(f"{shard_path}: tensor {name!r} is not mapped to this shard in {INDEX_NAME}")
            tensors[name] = arr
    absent = sorted(set(weight_map) - set(tensors))
    if absent:
        raise MftError(f"{index_path}: tensors listed but not found in their shard: {', '.join(absent[:5])}")
    return tensors, index_path


def write_pretrained(folder: str, config: dict, tensors: dict[str, np.ndarray], generation_config: dict | None = None) -> None:
    """Weights first, config last: a folder with a config.json always has its weights."""
    os.makedirs(folder, exist_ok=True)
    save_file(tensors, os.path.join(folder, WEIGHTS_NAME), metadata={"format": "pt"})
    stale_index = os.path.join(folder, INDEX_NAME)
    if os.path.exists(stale_index):
        os.remove(stale_index)  # a leftover index would shadow nothing but confuse readers
    if generation_config is not None:
        write_json_atomic(os.path.join(folder, "generation_config.json"), generation_config)
    write_json_atomic(os.path.join(folder, CONFIG_NAME), config)
