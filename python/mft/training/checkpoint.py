"""Training checkpoints: `output_dir/checkpoints/step_XXXXXXXX/` + `latest`.

A step folder holds the model as a Hugging Face checkpoint folder
(config.json + model.safetensors, loadable by `from_pretrained` and by
transformers), the tokenizer, the optimizer state (optimizer.safetensors),
the training state (trainer_state.json: step, data position, seed) and
layout.json (how every tensor is split across ranks).

Each folder is written under a temporary name and renamed into place, and
`latest` is rewritten (atomically) only after that, so an interrupted save
never leaves a half-written checkpoint where a reader would look.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

import numpy as np

from mft.errors import MftError
from mft.weights.safetensors import load_file, read_header, save_file

LATEST = "latest"
STEP_PREFIX = "step_"
LAYOUT_FORMAT = "mft-checkpoint-layout"


def step_dir_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:08d}"


@dataclass
class TrainerState:
    step: int  # optimizer steps completed
    consumed_samples: int  # samples drawn from the data pipeline so far
    tokens_seen: int
    seed: int

    def to_json(self) -> dict:
        return dict(self.__dict__)


def write_json_atomic(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def single_rank_layout(weights_file: str) -> dict:
    """Layout of an unsplit checkpoint: every tensor whole in rank 0's file."""
    header, _, _ = read_header(weights_file)
    tensors = {
        name: {
            "shape": entry["shape"],
            "dtype": entry["dtype"],
            "split_axis": None,
            "pieces": [{"rank": 0, "file": os.path.basename(weights_file), "offset": [0] * len(entry["shape"]), "shape": entry["shape"]}],
        }
        for name, entry in sorted(header.items())
    }
    return {"format": LAYOUT_FORMAT, "version": 1, "parallel": {"dp": 1, "tp": 1, "pp": 1, "ep": 1}, "tensors": tensors}


def save_checkpoint(
    checkpoints_dir: str,
    state: TrainerState,
    save_model_folder,  # callable(dir): writes config.json + model.safetensors
    optimizer_state: dict[str, np.ndarray],
    tokenizer_file: str | None,
    keep: int,
) -> str:
    os.makedirs(checkpoints_dir, exist_ok=True)
    name = step_dir_name(state.step)
    final = os.path.join(checkpoints_dir, name)
    tmp = os.path.join(checkpoints_dir, f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_model_folder(tmp)
    save_file(optimizer_state, os.path.join(tmp, "optimizer.safetensors"))
    if tokenizer_file:
        shutil.copyfile(tokenizer_file, os.path.join(tmp, "tokenizer.json"))
    write_json_atomic(os.path.join(tmp, "layout.json"), single_rank_layout(os.path.join(tmp, "model.safetensors")))
    write_json_atomic(os.path.join(tmp, "trainer_state.json"), state.to_json())
    if os.path.exists(final):  # the same step saved again (e.g. after resume): replace whole
        old = os.path.join(checkpoints_dir, f".{name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    latest_tmp = os.path.join(checkpoints_dir, f".{LATEST}.tmp")
    with open(latest_tmp, "w", encoding="utf-8") as f:
        f.write(name + "\n")
    os.replace(latest_tmp, os.path.join(checkpoints_dir, LATEST))
    _rotate(checkpoints_dir, keep, protect=name)
    return final


def _rotate(checkpoints_dir: str, keep: int, protect: str) -> None:
    if keep <= 0:
        return
    steps = sorted(d for d in os.listdir(checkpoints_dir) if d.startswith(STEP_PREFIX))
    for old in steps[:-keep]:
        if old != protect:
            shutil.rmtree(os.path.join(checkpoints_dir, old), ignore_errors=True)


def latest_checkpoint(checkpoints_dir: str) -> str | None:
    """The folder `latest` names, or None when there is no complete checkpoint."""
    path = os.path.join(checkpoints_dir, LATEST)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        name = f.read().strip()
    folder = os.path.join(checkpoints_dir, name)
    if not os.path.isdir(folder):
        raise MftError(f"{path}: names {name!r}, but {folder} does not exist")
    return folder


def load_trainer_state(folder: str) -> TrainerState:
    path = os.path.join(folder, "trainer_state.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return TrainerState(**data)
    except FileNotFoundError:
        raise MftError(f"{folder}: not a training checkpoint (no trainer_state.json)") from None
    except (json.JSONDecodeError, TypeError) as e:
        raise MftError(f"{path}: malformed training state: {e}") from None


def load_optimizer_state(folder: str) -> dict[str, np.ndarray]:
    path = os.path.join(folder, "optimizer.safetensors")
    if not os.path.isfile(path):
        raise MftError(f"{folder}: checkpoint has no optimizer.safetensors; cannot resume training from it")
    return load_file(path)


def resolve_model_folder(path: str) -> str:
    """A model folder from what a user may pass as --model: the folder itself,
    a run's output_dir, or its checkpoints/ folder (both via `latest`)."""
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    for checkpoints_dir in (os.path.join(path, "checkpoints"), path):
        if os.path.isfile(os.path.join(checkpoints_dir, LATEST)):
            return latest_checkpoint(checkpoints_dir)
    return path  # let the model loader report what is missing
