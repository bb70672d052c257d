"""End-to-end training on real files: tokenizer -> indexed data -> jitted train -> checkpoint -> resume."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mft.config import load_config
from mft.data.preprocess import preprocess
from mft.errors import MftError
from mft.monitor.metrics import read_metrics
from mft.tokenizer import Tokenizer
from mft.weights.safetensors import load_file

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(REPO, "data", "kjv", "kjv.jsonl")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A 512-token BPE and an indexed dataset of the first 60 KJV chapters."""
    root = tmp_path_factory.mktemp("corpus")
    src = root / "slice.jsonl"
    with open(CORPUS, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as out:
        for _, line in zip(range(60), f):
            out.write(line)
    tok = Tokenizer.train([str(src)], vocab_size=512)
    tok_path = str(root / "tokenizer.json")
    tok.save(tok_path)
    preprocess([str(src)], tok, str(root / "data"))
    return {"tokenizer": tok_path, "prefix": str(root / "data"), "root": root}


def write_recipe(tmp_path, corpus, output_dir, **train):
    recipe = {
        "run": {"output_dir": str(output_dir), "seed": 7},
        "tokenizer": {"path": corpus["tokenizer"]},
        "data": {"prefix": corpus["prefix"], "seq_len": 32},
        "model": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "max_position_embeddings": 64},
        "train": {"steps": 6, "micro_batch_size": 2, "optimizer": {"lr": 3e-3}, "lr_schedule": {"warmup_steps": 2}, **train},
        "checkpoint": {"every_steps": 3, "keep": 5},
        "monitor": {"progress_bar": False},
    }
    import yaml

    path = tmp_path / f"recipe_{os.path.basename(str(output_dir))}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def run_train(recipe, *overrides):
    from mft.training.trainer import train

    return train(load_config(recipe, list(overrides)), echo=lambda *_: None)


def test_training_writes_the_documented_run_folder(tmp_path, corpus):
    out = tmp_path / "run"
    summary = run_train(write_recipe(tmp_path, corpus, out), "train.steps=20", "train.optimizer.lr=0.01", "checkpoint.every_steps=10", "checkpoint.keep=1")
    metrics = read_metrics(str(out / "metrics.jsonl"))
    assert [m["step"] for m in metrics] == list(range(1, 21))
    for m in metrics:
        assert {"step", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(m)
        assert np.isfinite(m["loss"]) and m["grad_norm"] > 0 and m["tokens_per_s"] > 0
    assert np.mean([m["loss"] for m in metrics[-3:]]) < metrics[0]["loss"] - 0.5  # it learns
    assert os.path.isfile(out / "config.yaml") and load_config(str(out / "config.yaml")).train.steps == 20
    assert "step 20 loss" in (out / "logs" / "rank_0.log").read_text()
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out / "tensorboard"))
    # keep=1: only the newest step folder survives, and `latest` names it
    ckpts = out / "checkpoints"
    assert sorted(d for d in os.listdir(ckpts) if d.startswith("step_")) == ["step_00000020"]
    assert (ckpts / "latest").read_text().strip() == "step_00000020"
    assert summary["checkpoint"].endswith("step_00000020")
    folder = ckpts / "step_00000020"
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state == {"step": 20, "consumed_samples": 40, "tokens_seen": 40 * 32, "seed": 7}
    layout = json.loads((folder / "layout.json").read_text())
    assert layout["tensors"]["model.embed_tokens.weight"]["shape"] == [512, 32]


def test_checkpoint_is_a_loadable_hf_folder_with_the_trained_weights(tmp_path, corpus):
    import mindspore as ms

    from mft.models import AutoModelForCausalLM
    from mft.weights.safetensors import load_file

    out = tmp_path / "run"
    run_train(write_recipe(tmp_path, corpus, out))
    folder = str(out / "checkpoints" / "step_00000006")
    model = AutoModelForCausalLM.from_pretrained(folder)
    saved = load_file(os.path.join(folder, "model.safetensors"))
    for name, arr in model.hf_state_dict().items():
        np.testing.assert_array_equal(arr, saved[name])
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    ids = np.array([tok.encode("In the beginning God")], dtype=np.int32)
    logits = model(ms.Tensor(ids)).asnumpy()
    assert logits.shape == (1, ids.shape[1], 512) and np.isfinite(logits).all()


def test_resume_continues_bit_exactly(tmp_path, corpus):
    straight = tmp_path / "straight"
    run_train(write_recipe(tmp_path, corpus, straight))
    split = tmp_path / "split"
    recipe = write_recipe(tmp_path, corpus, split)
    run_train(recipe, "train.steps=3")
    run_train(recipe, "checkpoint.resume=auto")
    a = read_metrics(str(straight / "metrics.jsonl"))
    b = read_metrics(str(split / "metrics.jsonl"))
    assert [m["step"] for m in b] == [1, 2, 3, 4, 5, 6]
    for x, y in zip(a, b):
        assert (x["step"], x["loss"], x["grad_norm"], x["lr"]) == (y["step"], y["loss"], y["grad_norm"], y["lr"])
    wa = open(straight / "checkpoints" / "step_00000006" / "model.safetensors", "rb").read()
    wb = open(split / "checkpoints" / "step_00000006" / "model.safetensors", "rb").read()
    assert wa == wb


def test_gradient_accumulation_matches_the_larger_batch(tmp_path, corpus):
    big = tmp_path / "big"
    run_train(write_recipe(tmp_path, corpus, big, micro_batch_size=4, steps=3))
    acc = tmp_path / "acc"
    run_train(write_recipe(tmp_path, corpus, acc, micro_batch_size=2, grad_accum_steps=2, steps=3))
    a = read_metrics(str(big / "metrics.jsonl"))
    b = read_metrics(str(acc / "metrics.jsonl"))
    np.testing.assert_allclose([m["loss"] for m in a], [m["loss"] for m in b], rtol=2e-5)
    np.testing.assert_allclose([m["grad_norm"] for m in a], [m["grad_norm"] for m in b], rtol=1e-4)
    # and the weights after the 3 updates, up to fp32 summation order (mean of 2 x 2 vs of 4 rows) as AdamW
    # amplifies it: each element moves by ~lr x m / sqrt(v), so a near-zero gradient's rounding can shift its
    # update by a few 1e-6 (measured max 4e-6); 1e-5 is lr / 300
    wa = load_file(str(big / "checkpoints" / "step_00000003" / "model.safetensors"))
    wb = load_file(str(acc / "checkpoints" / "step_00000003" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=0, atol=1e-5, err_msg=name)


def tree_digest(path) -> dict:
    out = {}
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, path)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def test_a_refused_run_leaves_an_existing_run_untouched(tmp_path, corpus):
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path, corpus, out, steps=3)
    run_train(recipe)
    before = tree_digest(out)
    with pytest.raises(MftError, match="already holds a run"):
        run_train(recipe)
    with pytest.raises(MftError, match="already at step 3"):
        run_train(recipe, "checkpoint.resume=auto")
    with pytest.raises(MftError, match="no such|not found|does not exist"):
        run_train(recipe, "checkpoint.resume=auto", "train.steps=6", f"data.prefix={tmp_path}/missing")
    assert tree_digest(out) == before


def test_bad_inputs_fail_before_creating_the_output_dir(tmp_path, corpus):
    out = tmp_path / "never"
    recipe = write_recipe(tmp_path, corpus, out)
    with pytest.raises(MftError, match="missing"):
        run_train(recipe, f"data.prefix={tmp_path}/missing")
    with pytest.raises(MftError, match="nope.json"):
        run_train(recipe, f"tokenizer.path={tmp_path}/nope.json")
    with pytest.raises(MftError, match="parallel.tp=3 must divide model.num_heads=4"):
        run_train(recipe, "parallel.tp=3")
    with pytest.raises(MftError, match="--nproc 2"):  # a valid tp layout still needs its processes
        run_train(recipe, "parallel.tp=2")
    with pytest.raises(MftError, match="data.seq_len=128 exceeds model.max_position_embeddings=64"):
        run_train(recipe, "data.seq_len=128")
    assert not out.exists()


def test_cli_reports_config_errors_in_one_line(tmp_path, corpus):
    recipe = write_recipe(tmp_path, corpus, tmp_path / "cli")
    proc = subprocess.run(
        [sys.executable, "-m", "mft", "train", recipe, "--set", "train.stpes=3"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "mft train: error: --set train.stpes: unknown key 'train.stpes'; did you mean 'train.steps'?"
    ]
    assert "Traceback" not in proc.stderr


def losses_of(tmp_path, corpus, name: str, steps: int, *overrides: str) -> list[float]:
    """Per-step losses of a fresh run of the test recipe with `overrides`."""
    out = tmp_path / name
    run_train(write_recipe(tmp_path, corpus, out, steps=steps), *overrides)
    return [m["loss"] for m in read_metrics(str(out / "metrics.jsonl"))]


def test_fused_kernels_train_like_the_composed_reference(tmp_path, corpus):
    """The default (null = auto) turns the C++ kernels on for CPU; both paths learn alike."""
    a = losses_of(tmp_path, corpus, "ref", 4, "model.fused_rmsnorm=false", "model.fused_attention=false")
    b = losses_of(tmp_path, corpus, "fused", 4, "model.fused_rmsnorm=true", "model.fused_attention=true")
    c = losses_of(tmp_path, corpus, "auto", 4)
    assert b == c
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert a[-1] < a[0]


def test_pynative_debug_mode_matches_graph_mode(tmp_path, corpus):
    a = losses_of(tmp_path, corpus, "graph", 2)
    b = losses_of(tmp_path, corpus, "eager", 2, "run.mode=pynative")
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_moe_run_logs_router_health(tmp_path, corpus):
    out = tmp_path / "moe"
    moe = ["model.arch=mixtral", "model.num_experts=4", "model.num_experts_per_tok=2", "model.aux_loss_coef=0.01"]
    run_train(write_recipe(tmp_path, corpus, out, steps=2), *moe)
    last = read_metrics(str(out / "metrics.jsonl"))[-1]
    assert last["moe_aux_loss"] > 0
    assert last["moe_load_max_over_mean"] >= 1.0 >= last["moe_load_min_over_mean"] >= 0.0
