"""parallel.ep=2 on two msrun workers (dp=2, ep folded over dp as in Megatron) against one process.

A tiny Qwen3-MoE (hidden 32, 4 experts, top-2, dropless sorted dispatch, balance + z-loss on)
trains 10 steps from the same init and data order: the per-step losses, gradient norms and
aux losses equal the single-process run, and the ep=2 checkpoint (full HF folder, every expert)
resumes in one process with the same continued losses. One msrun launch.
"""

from __future__ import annotations

import json
import os

import pytest

from msrun_runs import STEPS, assert_same_steps, build_corpus, metrics, run_ok, write_recipe

MOE = {"arch": "qwen3_moe", "head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
       "norm_topk_prob": True, "capacity_factor": 0.0, "aux_loss_type": "global", "aux_loss_coef": 0.01,
       "router_z_loss_coef": 0.001}  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("ep_corpus"))


def recipe(tmp_path, corpus, name: str) -> tuple[str, str]:
    out = tmp_path / name
    path = write_recipe(tmp_path / f"{name}.yaml", corpus, out, model=MOE, checkpoint={"every_steps": 5, "keep": 3},
                        monitor={"log_every": 1})  # fmt: skip
    return path, str(out)


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ep1")
    path, out = recipe(tmp, corpus, "ep1")
    run_ok(["train", path], tmp, timeout=600)
    got = metrics(out)
    assert sorted(got) == list(range(1, STEPS + 1))
    return got


def test_ep2_matches_single_process_and_resumes_at_ep1(tmp_path, corpus, single):
    path, out = recipe(tmp_path, corpus, "ep2")
    run_ok(["train", path, "--nproc", "2", "--set", "parallel.dp=2", "--set", "parallel.ep=2"], tmp_path, timeout=600)
    got = metrics(out)
    # clipping sees every expert's gradient once; the balance loss comes from the whole micro-batch's counts
    assert_same_steps(got, single, range(1, STEPS + 1), keys=("loss", "grad_norm", "moe_aux_loss"), complete=True)
    for key in ("moe_load_max_over_mean", "moe_load_min_over_mean"):
        assert [got[s][key] for s in sorted(got)] == [single[s][key] for s in sorted(single)]
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
    run_ok(["train", path, "--set", f"run.output_dir={resumed}", "--set", f"checkpoint.resume={step5}"], tmp_path,
           timeout=600)  # fmt: skip
    assert_same_steps(metrics(resumed), single, range(6, STEPS + 1), keys=("loss",), complete=True)
