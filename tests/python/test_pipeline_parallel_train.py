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
import subprocess
import sys

import numpy as np
import pytest

from mft.config import load_config
from mft.data.preprocess import preprocess
from mft.monitor.metrics import read_metrics
from mft.parallel.launch import kill_tree
from mft.tokenizer import Tokenizer
from mft.weights.safetensors import load_file

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(REPO, "data", "kjv", "kjv.jsonl")
STEPS = 10
REL = 1e-5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import yaml

    root = tmp_path_factory.mktemp("pp_train")
    src = root / "slice.jsonl"
    with open(CORPUS, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as out:
        for _, line in zip(range(40), f):
            out.write(line)
    tok = Tokenizer.train([str(src)], vocab_size=256)
    tok.save(str(root / "tokenizer.json"))
    preprocess([str(src)], tok, str(root / "data"))
    cfg = {
        "run": {"output_dir": str(root / "pp1"), "seed": 5},
        "tokenizer": {"path": str(root / "tokenizer.json")},
        "data": {"prefix": str(root / "data"), "seq_len": 32},
        "model": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 3, "num_heads": 4, "num_kv_heads": 2,
                  "max_position_embeddings": 64, "tie_word_embeddings": True},
        "train": {"steps": STEPS, "micro_batch_size": 2, "grad_accum_steps": 4, "optimizer": {"lr": 3e-3},
                  "lr_schedule": {"warmup_steps": 2}, "clip_grad_norm": 0.5},
        "checkpoint": {"every_steps": 5, "keep": 0},
        "monitor": {"progress_bar": False, "tensorboard": False},
    }  # fmt: skip
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return root, str(path)


def metrics(output_dir) -> dict[int, dict]:
    return {r["step"]: r for r in read_metrics(os.path.join(output_dir, "metrics.jsonl"))}


def ckpt(output_dir, step: int) -> str:
    return os.path.join(output_dir, "checkpoints", f"step_{step:08d}")


def assert_same_steps(got: dict, want: dict, steps):
    for key in ("loss", "grad_norm"):
        a = np.array([got[s][key] for s in steps])
        b = np.array([want[s][key] for s in steps])
        rel = np.abs(a - b) / np.abs(b)
        assert rel.max() < REL, f"{key}: {a} vs single process {b} (max relative difference {rel.max():.2e})"


def test_pp2_1f1b_on_msrun_matches_single_process_and_resumes_at_pp1(setup):
    from mft.training.trainer import train

    root, recipe = setup
    pp1 = str(root / "pp1")
    train(load_config(recipe), echo=lambda *a, **k: None)
    reference = metrics(pp1)
    assert sorted(reference) == list(range(1, STEPS + 1))

    pp2 = str(root / "pp2")
    cmd = [sys.executable, "-m", "mft.cli.main", "train", recipe, "--nproc", "2", "--set", "parallel.pp=2",
           "--set", "parallel.pp_layers=[1, 2]", "--set", "parallel.micro_batches=4", "--set", f"run.output_dir={pp2}"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, err = proc.communicate()
        pytest.fail(f"timed out; killed. stdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}")
    assert proc.returncode == 0, err[-3000:] + out[-3000:]
    got = metrics(pp2)
    assert sorted(got) == list(range(1, STEPS + 1))
    assert_same_steps(got, reference, range(1, STEPS + 1))
    with open(os.path.join(pp2, "logs", "rank_1.log"), encoding="utf-8") as f:
        assert "pipeline stage 1 of 2: layers 1..2, norm, head, loss, tied embedding copy; split [1, 2]" in f.read()

    # Its checkpoints are the full HF folder, equal to the single-process ones (weights and Adam moments).
    for step in (5, STEPS):
        for name in ("model.safetensors", "optimizer.safetensors"):
            want = load_file(os.path.join(ckpt(pp1, step), name))
            have = load_file(os.path.join(ckpt(pp2, step), name))
            assert set(have) == set(want), name
            for k in want:
                assert have[k].shape == want[k].shape, k
                np.testing.assert_allclose(have[k], want[k], rtol=0, atol=5e-5, err_msg=f"step {step} {name}: {k}")

    # ... so the pp=2 step-5 checkpoint resumes at pp=1 with the single-process losses.
    back = str(root / "back_to_pp1")
    train(load_config(recipe, [f"run.output_dir={back}", f"checkpoint.resume={ckpt(pp2, 5)}"]), echo=lambda *a, **k: None)
    assert_same_steps(metrics(back), reference, range(6, STEPS + 1))
