"""parallel.ep=2 on two msrun workers (dp=2, ep folded over dp as in Megatron) against one process.

A tiny Qwen3-MoE (hidden 32, 4 experts, top-2, dropless sorted dispatch, balance + z-loss on)
trains 10 steps from the same init and data order: the per-step losses, gradient norms and
aux losses equal the single-process run, and the ep=2 checkpoint (full HF folder, every expert)
resumes in one process with the same continued losses. One msrun launch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mft.data.preprocess import preprocess
from mft.monitor.metrics import read_metrics
from mft.parallel.launch import kill_tree
from mft.tokenizer import Tokenizer

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(REPO, "data", "kjv", "kjv.jsonl")
MFT = [sys.executable, "-m", "mft.cli.main"]
STEPS = 10


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("ep_corpus")
    src = root / "slice.jsonl"
    with open(CORPUS, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as out:
        for _, line in zip(range(40), f):
            out.write(line)
    tok = Tokenizer.train([str(src)], vocab_size=384)
    tok.save(str(root / "tokenizer.json"))
    preprocess([str(src)], tok, str(root / "data"))
    return root


def recipe(tmp_path, corpus, name: str) -> tuple[str, str]:
    import yaml

    out = tmp_path / name
    cfg = {
        "run": {"output_dir": str(out), "seed": 11},
        "tokenizer": {"path": str(corpus / "tokenizer.json")},
        "data": {"prefix": str(corpus / "data"), "seq_len": 32},
        "model": {"arch": "qwen3_moe", "hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4,
                  "num_kv_heads": 2, "head_dim": 8, "max_position_embeddings": 64, "num_experts": 4,
                  "num_experts_per_tok": 2, "moe_intermediate_size": 32, "norm_topk_prob": True,
                  "capacity_factor": 0.0, "aux_loss_type": "global", "aux_loss_coef": 0.01, "router_z_loss_coef": 0.001},
        "train": {"steps": STEPS, "micro_batch_size": 4, "optimizer": {"lr": 3e-3}, "lr_schedule": {"warmup_steps": 2},
                  "clip_grad_norm": 1.0},
        "checkpoint": {"every_steps": 5, "keep": 3},
        "monitor": {"progress_bar": False, "tensorboard": False, "log_every": 1},
    }  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path), str(out)


def run(args, cwd, timeout=600):
    proc = subprocess.Popen(MFT + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout}s; killed. stdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}")
    assert proc.returncode == 0, err[-3000:] + out[-3000:]
    return out


def records(output_dir) -> list[dict]:
    return read_metrics(os.path.join(output_dir, "metrics.jsonl"))


def assert_close(got, want, key, tol=1e-5):
    a = np.array([r[key] for r in got])
    b = np.array([r[key] for r in want])
    assert a.shape == b.shape
    rel = np.abs(a - b) / np.abs(b)
    assert rel.max() < tol, f"{key}: ep=2 {a.tolist()}\nvs one process {b.tolist()}\n(max relative difference {rel.max():.2e})"


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ep1")
    path, out = recipe(tmp, corpus, "ep1")
    run(["train", path], tmp)
    got = records(out)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    return got


def test_ep2_matches_single_process_and_resumes_at_ep1(tmp_path, corpus, single):
    path, out = recipe(tmp_path, corpus, "ep2")
    run(["train", path, "--nproc", "2", "--set", "parallel.dp=2", "--set", "parallel.ep=2"], tmp_path)
    got = records(out)
    assert_close(got, single, "loss")
    assert_close(got, single, "grad_norm")  # clipping sees every expert's gradient once
    assert_close(got, single, "moe_aux_loss")  # balance loss from the whole micro-batch's counts
    for key in ("moe_load_max_over_mean", "moe_load_min_over_mean"):
        assert [r[key] for r in got] == [r[key] for r in single]
    with open(os.path.join(out, "logs", "rank_1.log")) as f:
        assert "ep: rank 1 holds experts 2-3 of 4" in f.read()

    # the ep=2 checkpoint is a full HF folder: every expert, loadable in one process
    step5 = os.path.join(out, "checkpoints", "step_00000005")
    with open(os.path.join(step5, "layout.json")) as f:
        names = set(json.load(f)["tensors"])
    for layer in range(2):
        for e in range(4):
            assert f"model.layers.{layer}.mlp.experts.{e}.down_proj.weight" in names
    resumed = tmp_path / "resumed"
    run(["train", path, "--set", f"run.output_dir={resumed}", "--set", f"checkpoint.resume={step5}"], tmp_path)
    again = records(resumed)
    assert [r["step"] for r in again] == list(range(6, STEPS + 1))
    assert_close(again, single[5:], "loss")
