"""A real 2-step training checkpoint survives tp=2 split + merge exactly,
optimizer state included."""

from __future__ import annotations

import os

import numpy as np

from mft.weights.reshard import reshard
from mft.weights.safetensors import load_file
from test_train import corpus, run_train, write_recipe  # noqa: F401  (module fixture)


def test_training_checkpoint_tp2_split_and_merge_is_exact(tmp_path, corpus):  # noqa: F811
    run_train(write_recipe(tmp_path, corpus, tmp_path / "run", steps=2), "checkpoint.every_steps=2")
    ckpt = str(tmp_path / "run" / "checkpoints" / "step_00000002")
    split, merged = str(tmp_path / "tp2"), str(tmp_path / "merged")
    reshard(ckpt, split, tp=2)
    names = sorted(os.listdir(split))
    assert {"optimizer-tp00-pp00-ep00.safetensors", "optimizer-tp01-pp00-ep00.safetensors", "optimizer_layout.json",
            "trainer_state.json", "model-tp00-pp00-ep00.safetensors"} <= set(names)
    opt0 = load_file(os.path.join(split, "optimizer-tp00-pp00-ep00.safetensors"))
    opt1 = load_file(os.path.join(split, "optimizer-tp01-pp00-ep00.safetensors"))
    full = load_file(os.path.join(ckpt, "optimizer.safetensors"))
    q = "model.layers.0.self_attn.q_proj.weight"
    # Moments are split like their weights (q_proj column-wise); the step counter lives on rank 0 only.
    for m in ("exp_avg.", "exp_avg_sq."):
        half = full[m + q].shape[0] // 2
        assert np.array_equal(opt0[m + q], full[m + q][:half]) and np.array_equal(opt1[m + q], full[m + q][half:])
        assert np.abs(full[m + q]).sum() > 0  # two steps really moved the moments
    assert "optimizer_step" in opt0 and "optimizer_step" not in opt1
    reshard(split, merged, tp=1)
    for fname in ("model.safetensors", "optimizer.safetensors"):
        a, b = load_file(os.path.join(ckpt, fname)), load_file(os.path.join(merged, fname))
        assert sorted(a) == sorted(b)
        for k in a:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), (fname, k)
    with open(os.path.join(ckpt, "trainer_state.json"), "rb") as f, open(os.path.join(merged, "trainer_state.json"), "rb") as g:
        assert f.read() == g.read()
