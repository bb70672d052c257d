"""`mft train --nproc 2 --set parallel.pp=2` (1F1B, 4 micro-batches) on msrun workers against the single-process run.

One launched run covers: a 3-layer model with tied embeddings split [1, 2] (stage 0: embedding + layer 0;
stage 1: layers 1-2, final norm and the head, which uses its own copy of the embedding), activations and
their gradients exchanged between the stages, the tied embedding's two gradients summed across the stages,
the clip norm over both stages; 10 per-step losses and grad norms equal to the single-process run with
train.grad_accum_steps=4 (the same global batch) within 1e-5 relative. Its checkpoints are the full Hugging
Face folder (each stage's tensors and Adam moments broadcast on save), equal to the single-process ones, and
the step-5 one resumes at pp=1 with the same continued losses.
"""

from __future__ import annotations

import os

import pytest

from msrun_runs import (STEPS, assert_same_steps, assert_same_tensors, build_corpus, ckpt, metrics, run_ok,
                        train_args, train_in_process, write_recipe)  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = build_corpus(tmp_path_factory.mktemp("pp_train"), vocab_size=256)
    path = write_recipe(root / "recipe.yaml", root, root / "pp1", seed=5,
                        model={"num_layers": 3, "tie_word_embeddings": True},
                        train={"micro_batch_size": 2, "grad_accum_steps": 4, "clip_grad_norm": 0.5},
                        checkpoint={"every_steps": 5, "keep": 0})  # fmt: skip
    return root, path


def test_pp2_1f1b_on_msrun_matches_single_process_and_resumes_at_pp1(setup):
    root, recipe = setup
    pp1 = str(root / "pp1")
    train_in_process(recipe)
    reference = metrics(pp1)
    assert sorted(reference) == list(range(1, STEPS + 1))

    pp2 = str(root / "pp2")
    run_ok(train_args(recipe, ["parallel.pp=2", "parallel.pp_layers=[1, 2]", "parallel.micro_batches=4",
                               f"run.output_dir={pp2}"], nproc=2), root, timeout=300)  # fmt: skip
    got = metrics(pp2)
    assert sorted(got) == list(range(1, STEPS + 1))
    assert_same_steps(got, reference, range(1, STEPS + 1))
    with open(os.path.join(pp2, "logs", "rank_1.log"), encoding="utf-8") as f:
        assert "pipeline stage 1 of 2: layers 1..2, norm, head, loss, tied embedding copy; split [1, 2]" in f.read()

    # Its checkpoints are the full HF folder, equal to the single-process ones (weights and Adam moments).
    for step in (5, STEPS):
        assert_same_tensors(ckpt(pp2, step), ckpt(pp1, step), label=f"step {step} ")

    # ... so the pp=2 step-5 checkpoint resumes at pp=1 with the single-process losses.
    back = str(root / "back_to_pp1")
    train_in_process(recipe, [f"run.output_dir={back}", f"checkpoint.resume={ckpt(pp2, 5)}"])
    assert_same_steps(metrics(back), reference, range(6, STEPS + 1))
