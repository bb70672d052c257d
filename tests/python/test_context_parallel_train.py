"""`mft train --nproc 2 --set parallel.cp=2` on msrun workers against the single-process run.

One launched run covers: 10 steps at cp=2 from the same initial weights and data order as the
single-process run, with per-step losses and grad norms equal within 1e-5 relative (fp32), on a Qwen3
model with GQA (4 query heads, 2 kv heads) and q/k norms, so the K/V all-gather and its reduce-scatter
backward, the chunk positions under RoPE, the cp loss total and the cp gradient sum are all exercised.
Its checkpoints (written by rank 0; weights are replicated over cp) then resume at cp=1 with the same
continued losses.
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

    root = tmp_path_factory.mktemp("cp_train")
    src = root / "slice.jsonl"
    with open(CORPUS, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as out:
        for _, line in zip(range(40), f):
            out.write(line)
    tok = Tokenizer.train([str(src)], vocab_size=384)
    tok.save(str(root / "tokenizer.json"))
    preprocess([str(src)], tok, str(root / "data"))
    cfg = {
        "run": {"output_dir": str(root / "cp1"), "seed": 5},
        "tokenizer": {"path": str(root / "tokenizer.json")},
        "data": {"prefix": str(root / "data"), "seq_len": 64},
        "model": {"arch": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4,
                  "num_kv_heads": 2, "head_dim": 8, "max_position_embeddings": 128},
        "train": {"steps": STEPS, "micro_batch_size": 2, "optimizer": {"lr": 3e-3}, "lr_schedule": {"warmup_steps": 2},
                  "clip_grad_norm": 1.0},
        "checkpoint": {"every_steps": 5, "keep": 0},
        "monitor": {"progress_bar": False, "tensorboard": False, "mfu": False},
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


def test_cp2_on_msrun_matches_single_process_and_resumes_at_cp1(setup):
    from mft.training.trainer import train

    root, recipe = setup
    cp1 = str(root / "cp1")
    train(load_config(recipe), echo=lambda *a, **k: None)
    reference = metrics(cp1)
    assert sorted(reference) == list(range(1, STEPS + 1))

    cp2 = str(root / "cp2")
    cmd = [sys.executable, "-m", "mft.cli.main", "train", recipe, "--nproc", "2", "--set", "parallel.cp=2",
           "--set", f"run.output_dir={cp2}"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, err = proc.communicate()
        pytest.fail(f"timed out; killed. stdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}")
    assert proc.returncode == 0, err[-3000:] + out[-3000:]
    got = metrics(cp2)
    assert sorted(got) == list(range(1, STEPS + 1))
    assert_same_steps(got, reference, range(1, STEPS + 1))
    assert {"rank_0.log", "rank_1.log"} <= set(os.listdir(os.path.join(cp2, "logs")))

    # The cp=2 checkpoint holds the same full tensors as the single-process one ...
    for name in ("model.safetensors", "optimizer.safetensors"):
        want = load_file(os.path.join(ckpt(cp1, STEPS), name))
        have = load_file(os.path.join(ckpt(cp2, STEPS), name))
        assert set(have) == set(want)
        for k in want:
            np.testing.assert_allclose(have[k], want[k], rtol=0, atol=5e-5, err_msg=f"{name}: {k}")

    # ... and its mid-run checkpoint resumes at cp=1 with the single-process losses.
    back = str(root / "back_to_cp1")
    train(load_config(recipe, [f"run.output_dir={back}", f"checkpoint.resume={ckpt(cp2, 5)}"]), echo=lambda *a, **k: None)
    assert sorted(metrics(back)) == list(range(6, STEPS + 1))
    assert_same_steps(metrics(back), reference, range(6, STEPS + 1))
