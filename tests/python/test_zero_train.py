"""ZeRO-1 / ZeRO-2 (`parallel.zero`) on msrun workers against the single-process run.

From the same initial weights and data order, with clipping, weight decay and
a param group: dp=2 x tp=2 zero=1 (4 workers) and dp=2 zero=2 (with gradient
accumulation, so the sharded gradient buffer is used) give the single-process per-step losses
and grad norms; each rank holds only its 1/dp shard of AdamW's moments (read
from the rank logs, which list the sizes of the Parameters the rank has);
the checkpoints hold the full optimizer state in the zero=0 format, equal to
the single-process one; a zero=2 checkpoint resumes at dp=1 zero=0 with the
same continued losses, and a zero=0 checkpoint resumes at zero=1.
"""

from __future__ import annotations

import ast
import os
import re

import pytest

from msrun_runs import (STEPS, assert_same_steps, assert_same_tensors, build_corpus, ckpt, metrics, run_ok,
                        train_args, train_in_process, write_recipe)  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = build_corpus(tmp_path_factory.mktemp("zero_train"))
    optimizer = {"lr": 3e-3, "weight_decay": 0.1, "param_groups": [{"pattern": r"\.mlp\.", "lr_scale": 0.5}]}
    path = write_recipe(root / "recipe.yaml", root, root / "single", train={"optimizer": optimizer},
                        checkpoint={"every_steps": 5, "keep": 0})  # fmt: skip
    return root, path


def msrun(recipe, overrides, cwd, nproc=2):
    run_ok(train_args(recipe, overrides, nproc), cwd, timeout=600)


def holdings(output_dir, rank: int) -> dict:
    """The `zero: {...}` line of a rank log: the sizes of the Parameters that rank holds."""
    with open(os.path.join(output_dir, "logs", f"rank_{rank}.log"), encoding="utf-8") as f:
        found = re.findall(r" zero: (\{.*\})", f.read())
    assert len(found) == 1, f"rank {rank}: {found}"
    return ast.literal_eval(found[0])


def parameter_count(output_dir) -> int:
    with open(os.path.join(output_dir, "logs", "rank_0.log"), encoding="utf-8") as f:
        return int(re.search(r" parameters: (\d+)", f.read()).group(1))


def assert_same_optimizer_state(folder, reference_folder):
    # the zero=0 names: exp_avg.<param>, exp_avg_sq.<param>, optimizer_step; tp sums in another order
    assert_same_tensors(folder, reference_folder, names=("optimizer.safetensors",), rtol=1e-4, atol=5e-6)


@pytest.fixture(scope="module")
def reference(setup):
    root, recipe = setup
    train_in_process(recipe)
    got = metrics(str(root / "single"))
    assert sorted(got) == list(range(1, STEPS + 1))
    return str(root / "single"), got


def test_zero1_dp2_x_tp2_on_four_workers_matches_single_process_with_sharded_state(setup, reference):
    """dp=2 x tp=2 (4 msrun workers) with zero=1: the dp x tp parity case of the issue, with each dp rank
    holding half of AdamW's state for its tp pieces; the dp groups are sub-groups, so the weights are
    all-gathered through the CPU fallback."""
    root, recipe = setup
    ref_dir, ref = reference
    out = str(root / "zero1")
    msrun(recipe, ["parallel.dp=2", "parallel.tp=2", "parallel.zero=1", f"run.output_dir={out}"], root, nproc=4)
    assert_same_steps(metrics(out), ref, range(1, STEPS + 1), complete=True)
    n = parameter_count(ref_dir)
    seen = set()
    for rank in range(4):
        h = holdings(out, rank)
        local = h["parameters"]  # this tp rank's pieces
        assert n // 2 < local < n
        assert (h["stage"], h["dp"], h["shard"]) == (1, 2, -(-local // 2))
        assert h["optimizer_state_elements"] == 2 * h["shard"] + 1  # two moments of 1/dp each + the step counter
        # every Parameter of the step cells: the (tp-local) weights, and AdamW's state only as 1/dp shards
        assert h["step_parameter_elements"] == local + 2 * h["shard"] + 1
        seen.add(h["rank"])
    assert seen == {0, 1}
    assert_same_optimizer_state(ckpt(out, STEPS), ckpt(ref_dir, STEPS))  # gathered over dp, then over tp


def test_zero2_dp2_matches_and_its_checkpoint_resumes_at_dp1(setup, reference):
    root, recipe = setup
    ref_dir, ref = reference
    out = str(root / "zero2")
    # 2 micro-batches of 2: the same global batch of 4, the gradient accumulated in a 1/dp shard buffer
    msrun(recipe, ["parallel.dp=2", "parallel.zero=2", "train.grad_accum_steps=2", "train.micro_batch_size=2",
                   f"run.output_dir={out}"], root)  # fmt: skip
    assert_same_steps(metrics(out), ref, range(1, STEPS + 1), complete=True)
    n = parameter_count(ref_dir)
    shard = -(-n // 2)
    for rank in (0, 1):
        h = holdings(out, rank)
        assert (h["stage"], h["shard"], h["optimizer_state_elements"]) == (2, shard, 2 * shard + 1)
        assert h["grad_buffer_elements"] == shard  # not one full-size buffer per parameter
        assert h["step_parameter_elements"] == n + 3 * shard + 1  # weights + two moment shards + step + grad shard
    assert_same_optimizer_state(ckpt(out, 5), ckpt(ref_dir, 5))

    # the zero=2 dp=2 checkpoint continues as one process without ZeRO: the same losses as the zero=2 run
    back = str(root / "back_to_dp1")
    train_in_process(recipe, [f"run.output_dir={back}", f"checkpoint.resume={ckpt(out, 5)}"])
    assert_same_steps(metrics(back), metrics(out), range(6, STEPS + 1), complete=True)


def test_zero0_checkpoint_resumes_at_zero1(setup, reference):
    """In-process (dp=1): the full-format state goes back into ZeroAdamW's flat shard."""
    root, recipe = setup
    ref_dir, ref = reference
    out = str(root / "into_zero1")
    train_in_process(recipe, [f"run.output_dir={out}", "parallel.zero=1", f"checkpoint.resume={ckpt(ref_dir, 5)}"])
    assert_same_steps(metrics(out), ref, range(6, STEPS + 1), complete=True)
    assert_same_optimizer_state(ckpt(out, STEPS), ckpt(ref_dir, STEPS))
