"""`mft train --nproc 2 --set parallel.tp=2` on msrun workers against the single-process run.

One launched run covers: resuming a tp=1 checkpoint at tp=2 (weights and Adam moments sliced on load),
per-step losses and grad norms equal to the single-process run (vocab-parallel embedding, LM head and
cross-entropy, split GQA heads, the conjugate mappings' gradients, the tp-aware clip norm), and
checkpoints gathered back into the full Hugging Face layout, equal to the single-process ones. The tp=2
checkpoint then resumes at tp=1 with the same losses and loads with `from_pretrained` unchanged. The
vocabulary (385) does not divide by tp, so the padded last shard is exercised too.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from msrun_runs import (assert_same_steps, assert_same_tensors, build_corpus, ckpt, metrics, run_ok, train_args,
                        train_in_process, write_recipe)  # fmt: skip
from mft.weights.safetensors import load_file

STEPS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = build_corpus(tmp_path_factory.mktemp("tp_train"))
    path = write_recipe(root / "recipe.yaml", root, root / "tp1", model={"vocab_size": 385}, train={"steps": STEPS},
                        checkpoint={"every_steps": 2, "keep": 0})  # fmt: skip
    return root, path


def test_tp2_on_msrun_matches_single_process_and_checkpoints_move_between_tp_sizes(setup):
    root, recipe = setup
    tp1 = str(root / "tp1")
    train_in_process(recipe)
    reference = metrics(tp1)
    assert sorted(reference) == list(range(1, STEPS + 1))

    # tp=2, resuming the single-process step-2 checkpoint (full tensors sliced per rank, Adam moments too)
    tp2 = str(root / "tp2")
    run_ok(train_args(recipe, ["parallel.tp=2", f"run.output_dir={tp2}", f"checkpoint.resume={ckpt(tp1, 2)}"],
                      nproc=2), root, timeout=240)  # fmt: skip
    got = metrics(tp2)
    assert sorted(got) == list(range(3, STEPS + 1))
    assert_same_steps(got, reference, range(3, STEPS + 1))
    assert {"rank_0.log", "rank_1.log"} <= set(os.listdir(os.path.join(tp2, "logs")))

    # Its checkpoints are full HF tensors (gathered on save), equal to the single-process ones.
    assert_same_tensors(ckpt(tp2, STEPS), ckpt(tp1, STEPS))
    assert load_file(os.path.join(ckpt(tp2, STEPS), "model.safetensors"))["lm_head.weight"].shape == (385, 32)
    with open(os.path.join(ckpt(tp1, STEPS), "config.json")) as a, open(os.path.join(ckpt(tp2, STEPS), "config.json")) as b:
        assert json.load(a) == json.load(b)

    # ... so a tp=2 checkpoint resumes at tp=1 with the single-process losses,
    back = str(root / "back_to_tp1")
    train_in_process(recipe, [f"run.output_dir={back}", f"checkpoint.resume={ckpt(tp2, 4)}"])
    assert_same_steps(metrics(back), reference, range(5, STEPS + 1))

    # ... and loads as a plain model (what `mft generate` does).
    import mindspore as ms

    from mft.models import AutoModelForCausalLM

    ids = ms.Tensor(np.array([[1, 5, 9, 2, 7]], np.int32))
    a = AutoModelForCausalLM.from_pretrained(ckpt(tp2, STEPS))(ids).asnumpy()
    b = AutoModelForCausalLM.from_pretrained(ckpt(tp1, STEPS))(ids).asnumpy()
    np.testing.assert_allclose(a, b, atol=1e-4)
