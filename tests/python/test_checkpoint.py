"""Checkpoint folders on real files: manifest, verification, fallback past damaged folders, rotation."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from mft.errors import MftError
from mft.training.checkpoint import (
    MANIFEST,
    TrainerState,
    checkpoint_problem,
    file_crc32,
    latest_checkpoint,
    resolve_model_folder,
    save_checkpoint,
    verify_checkpoint,
)
from mft.weights.safetensors import load_file, save_file


def weights(step: int) -> dict:
    rng = np.random.default_rng(step)
    return {"model.embed_tokens.weight": rng.standard_normal((64, 16)).astype(np.float32),
            "model.norm.weight": np.full((16,), float(step), np.float32)}


def save(ckpts, step: int, keep: int = 0, fail: bool = False) -> str:
    def model_folder(d):
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"model_type": "llama"}, f)
        save_file(weights(step), os.path.join(d, "model.safetensors"))
        if fail:
            raise OSError(28, "No space left on device")

    state = TrainerState(step=step, consumed_samples=2 * step, tokens_seen=64 * step, seed=7)
    optim = {"exp_avg.model.norm.weight": np.full((16,), step, np.float32), "optimizer_step": np.array(step, np.int32)}
    return save_checkpoint(str(ckpts), state, model_folder, optim, None, keep)


def steps_in(ckpts) -> list[str]:
    return sorted(d for d in os.listdir(ckpts) if d.startswith("step_"))


def truncate(path, keep_bytes: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(keep_bytes)


def test_manifest_lists_every_file_with_size_and_crc(tmp_path):
    folder = save(tmp_path, 3)
    manifest = json.loads(open(os.path.join(folder, MANIFEST)).read())
    names = sorted(f for f in os.listdir(folder) if f != MANIFEST)
    assert sorted(manifest["files"]) == names == ["config.json", "layout.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"]
    for name, entry in manifest["files"].items():
        path = os.path.join(folder, name)
        assert entry == {"size": os.path.getsize(path), "crc32": file_crc32(path)}
    assert checkpoint_problem(folder) is None
    verify_checkpoint(folder)
    assert latest_checkpoint(str(tmp_path)) == folder
    assert not [d for d in os.listdir(tmp_path) if d.endswith(".tmp")]  # no temp folder left


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    save(tmp_path, 2)
    newest = save(tmp_path, 4)
    model = os.path.join(newest, "model.safetensors")
    truncate(model, os.path.getsize(model) // 2)
    with pytest.warns(UserWarning, match=r"step_00000004 is damaged \(model.safetensors has \d+ bytes, the manifest says \d+ \(truncated"):
        folder = latest_checkpoint(str(tmp_path))
    assert folder.endswith("step_00000002")
    np.testing.assert_array_equal(load_file(os.path.join(folder, "model.safetensors"))["model.norm.weight"], np.full(16, 2.0))
    with pytest.raises(MftError, match="step_00000004: incomplete checkpoint: model.safetensors has"):
        verify_checkpoint(newest)


def test_missing_manifest_and_flipped_bytes_are_both_detected(tmp_path):
    save(tmp_path, 1)
    save(tmp_path, 2)
    no_manifest = save(tmp_path, 3)
    os.remove(os.path.join(no_manifest, MANIFEST))
    optim = os.path.join(save(tmp_path, 4), "optimizer.safetensors")
    with open(optim, "r+b") as f:  # same size, different bytes: only the checksum sees it
        f.seek(os.path.getsize(optim) - 3)
        f.write(b"\xff\xfe\xfd")
    messages = []
    folder = latest_checkpoint(str(tmp_path), warn=messages.append)
    assert folder.endswith("step_00000002")
    assert len(messages) == 1
    assert "step_00000004: optimizer.safetensors: CRC-32" in messages[0] and "(corrupted)" in messages[0]
    assert "step_00000003: no manifest.json (the save did not finish)" in messages[0]


def test_all_checkpoints_damaged_is_an_error_naming_each(tmp_path):
    a = save(tmp_path, 1)
    b = save(tmp_path, 2)
    os.remove(os.path.join(a, "trainer_state.json"))
    truncate(os.path.join(b, "layout.json"), 0)
    with pytest.raises(MftError, match=r"no complete checkpoint: step_00000002: layout.json has 0 bytes.*step_00000001: trainer_state.json is missing"):
        latest_checkpoint(str(tmp_path), warn=lambda m: None)
    assert latest_checkpoint(str(tmp_path / "none")) is None


def test_a_failed_save_keeps_the_last_good_checkpoint_even_with_keep_1(tmp_path):
    good = save(tmp_path, 5, keep=1)
    with pytest.raises(OSError, match="No space"):
        save(tmp_path, 6, keep=1, fail=True)
    assert steps_in(tmp_path) == ["step_00000005"]
    assert open(tmp_path / "latest").read().strip() == "step_00000005"
    assert latest_checkpoint(str(tmp_path)) == good
    # the next successful save clears the half-written temp folder and only then rotates
    save(tmp_path, 7, keep=1)
    assert steps_in(tmp_path) == ["step_00000007"]
    assert not [d for d in os.listdir(tmp_path) if d.startswith(".")]


def test_rotation_counts_only_complete_checkpoints(tmp_path):
    for step in (1, 2, 3):
        save(tmp_path, step, keep=2)
    assert steps_in(tmp_path) == ["step_00000002", "step_00000003"]
    # a damaged folder is not one of the `keep` good ones: both complete older ones stay
    truncate(os.path.join(tmp_path, "step_00000003", "model.safetensors"), 10)
    save(tmp_path, 2, keep=2)  # a resumed run saving step 2 again
    assert steps_in(tmp_path) == ["step_00000002", "step_00000003"]
    save(tmp_path, 4, keep=2)
    assert steps_in(tmp_path) == ["step_00000002", "step_00000003", "step_00000004"]
    messages = []
    assert latest_checkpoint(str(tmp_path), warn=messages.append).endswith("step_00000004") and not messages
    save(tmp_path, 5, keep=2)
    assert steps_in(tmp_path) == ["step_00000004", "step_00000005"]


def test_resolve_model_folder_uses_the_newest_complete_checkpoint(tmp_path):
    save(tmp_path / "checkpoints", 1)
    newest = save(tmp_path / "checkpoints", 2)
    os.remove(os.path.join(newest, MANIFEST))
    with pytest.warns(UserWarning, match="no manifest.json"):
        assert resolve_model_folder(str(tmp_path)).endswith("step_00000001")
