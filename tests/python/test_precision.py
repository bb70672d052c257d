"""Mixed precision on real training runs: fp16 compute over fp32 master weights,
dynamic loss scaling (overflow skips the step), bf16 refused on CPU."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mft.errors import MftError
from mft.monitor.metrics import read_metrics
from mft.weights.safetensors import load_file
from test_train import corpus, losses_of, run_train, write_recipe  # noqa: F401  (corpus is a fixture)


def test_bf16_is_refused_on_cpu_before_anything_is_written(tmp_path, corpus):
    out = tmp_path / "bf16"
    with pytest.raises(MftError, match=r"train\.precision=bf16: .*CPU backend has no bfloat16 MatMul"):
        run_train(write_recipe(tmp_path, corpus, out), "train.precision=bf16")
    assert not out.exists()


@pytest.mark.parametrize("key, value", [("initial_scale", "0"), ("growth_factor", "1.0"), ("growth_interval", "0"),
                                        ("min_scale", "1e9")])
def test_bad_loss_scale_settings_name_the_key(tmp_path, corpus, key, value):
    out = tmp_path / "bad"
    with pytest.raises(MftError, match=rf"train\.loss_scale\.{key}"):
        run_train(write_recipe(tmp_path, corpus, out), "train.precision=fp16", f"train.loss_scale.{key}={value}")
    assert not out.exists()


def test_fp16_tracks_fp32_and_keeps_fp32_master_weights(tmp_path, corpus):
    steps = 30
    fp32 = losses_of(tmp_path, corpus, "fp32", steps)
    fp16 = losses_of(tmp_path, corpus, "fp16", steps, "train.precision=fp16")
    # fp16 rounding (10-bit mantissa) in every matmul: the curves agree to a few
    # parts in a thousand, and both learn.
    np.testing.assert_allclose(fp16, fp32, rtol=5e-3)
    assert fp16[-1] < fp16[0] - 0.5
    metrics = read_metrics(str(tmp_path / "fp16" / "metrics.jsonl"))
    assert all(m["loss_scale"] >= 1 and m["skipped"] is False for m in metrics)
    ckpt = tmp_path / "fp16" / "checkpoints" / f"step_{steps:08d}"
    weights = load_file(str(ckpt / "model.safetensors"))
    assert {w.dtype for w in weights.values()} == {np.dtype("float32")}
    # `mft plan` counts what the trainer keeps: the fp32 parameters once (they are the master weights), fp16
    # working copies of the linear matrices only, and fp32 optimizer state without a second master copy
    from mft.config import load_config
    from mft.plan import make_plan

    plan = make_plan(load_config(str(tmp_path / "recipe_fp16.yaml"), ["train.precision=fp16"]))["memory"]["per_device"]
    state = load_file(str(ckpt / "optimizer.safetensors"))
    moments = sum(v.nbytes for k, v in state.items() if k.startswith(("exp_avg.", "exp_avg_sq.")))
    fp32_params = sum(w.nbytes for w in weights.values())
    assert plan["weights"] - plan["weight_casts"] == fp32_params and plan["optimizer"] == moments
    linear = sum(w.size for k, w in weights.items() if w.ndim == 2 and "embed_tokens" not in k)  # untied: the embedding gathers rows
    assert plan["weight_casts"] == 2 * linear


def test_overflow_skips_the_update_and_lowers_the_scale(tmp_path, corpus):
    """A scale of 2^24 overflows fp16 in the backward (the logits' gradient alone
    is ~scale / tokens = 2^18 > 65504): those steps leave the weights untouched
    and halve the scale until gradients are finite."""
    out = tmp_path / "overflow"
    steps = 10
    run_train(write_recipe(tmp_path, corpus, out, steps=steps, clip_grad_norm=0.0), "train.precision=fp16",
              "train.loss_scale.initial_scale=16777216", "checkpoint.every_steps=1", "checkpoint.keep=0")
    metrics = read_metrics(str(out / "metrics.jsonl"))
    skipped = [m["skipped"] for m in metrics]
    assert skipped[0] is True and not all(skipped)
    weights = [load_file(str(out / "checkpoints" / f"step_{k:08d}" / "model.safetensors")) for k in range(1, steps + 1)]
    scale = 2.0**24
    for k, m in enumerate(metrics):
        # a skipped step halves the scale; a clean one keeps it (growth_interval is 1000)
        scale = scale / 2 if m["skipped"] else scale
        assert m["loss_scale"] == scale
        if k == 0:
            continue
        same = all(np.array_equal(weights[k - 1][name], weights[k][name]) for name in weights[k])
        assert same == m["skipped"], f"step {k + 1}: skipped={m['skipped']} but weights unchanged={same}"


def test_fp16_resume_restores_the_loss_scale(tmp_path, corpus):
    overrides = ("train.precision=fp16", "train.loss_scale.growth_interval=2")
    straight = tmp_path / "straight"
    run_train(write_recipe(tmp_path, corpus, straight), *overrides)
    split = tmp_path / "split"
    recipe = write_recipe(tmp_path, corpus, split)
    run_train(recipe, *overrides, "train.steps=3")
    run_train(recipe, *overrides, "checkpoint.resume=auto")
    a = read_metrics(str(straight / "metrics.jsonl"))
    b = read_metrics(str(split / "metrics.jsonl"))
    assert [m["loss_scale"] for m in a] == [m["loss_scale"] for m in b]
    assert a[-1]["loss_scale"] > a[0]["loss_scale"]  # it grew every 2 clean steps
    assert [m["loss"] for m in a] == [m["loss"] for m in b]
    assert os.path.exists(split / "checkpoints" / "step_00000006" / "optimizer.safetensors")
