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
STEPS = 6
REL = 1e-5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import yaml

    root = tmp_path_factory.mktemp("tp_train")
    src = root / "slice.jsonl"
    with open(CORPUS, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as out:
        for _, line in zip(range(40), f):
            out.write(line)
    tok = Tokenizer.train([str(src)], vocab_size=384)
    tok.save(str(root / "tokenizer.json"))
    preprocess([str(src)], tok, str(root / "data"))
    cfg = {
        "run": {"output_dir": str(root / "tp1"), "seed": 11},
        "tokenizer": {"path": str(root / "tokenizer.json")},
        "data": {"prefix": str(root / "data"), "seq_len": 32},
        "model": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
                  "max_position_embeddings": 64, "vocab_size": 385},
        "train": {"steps": STEPS, "micro_batch_size": 4, "optimizer": {"lr": 3e-3}, "lr_schedule": {"warmup_steps": 2},
                  "clip_grad_norm": 1.0},
        "checkpoint": {"every_steps": 2, "keep": 0},
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


def test_tp2_on_msrun_matches_single_process_and_checkpoints_move_between_tp_sizes(setup):
    from mft.training.trainer import train

    root, recipe = setup
    tp1 = str(root / "tp1")
    train(load_config(recipe), echo=lambda *a, **k: None)
    reference = metrics(tp1)
    assert sorted(reference) == list(range(1, STEPS + 1))

    # tp=2, resuming the single-process step-2 checkpoint (full tensors sliced per rank, Adam moments too)
    tp2 = str(root / "tp2")
    cmd = [sys.executable, "-m", "mft.cli.main", "train", recipe, "--nproc", "2", "--set", "parallel.tp=2",
           "--set", f"run.output_dir={tp2}", "--set", f"checkpoint.resume={ckpt(tp1, 2)}"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, err = proc.communicate()
        pytest.fail(f"timed out; killed. stdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}")
    assert proc.returncode == 0, err[-3000:] + out[-3000:]
    got = metrics(tp2)
    assert sorted(got) == list(range(3, STEPS + 1))
    assert_same_steps(got, reference, range(3, STEPS + 1))
    assert {"rank_0.log", "rank_1.log"} <= set(os.listdir(os.path.join(tp2, "logs")))

    # Its checkpoints are full HF tensors (gathered on save), equal to the single-process ones.
    for name in ("model.safetensors", "optimizer.safetensors"):
        want = load_file(os.path.join(ckpt(tp1, STEPS), name))
        have = load_file(os.path.join(ckpt(tp2, STEPS), name))
        assert set(have) == set(want)
        for k in want:
            assert have[k].shape == want[k].shape, k
            np.testing.assert_allclose(have[k], want[k], rtol=0, atol=5e-5, err_msg=f"{name}: {k}")
    assert load_file(os.path.join(ckpt(tp2, STEPS), "model.safetensors"))["lm_head.weight"].shape == (385, 32)
    with open(os.path.join(ckpt(tp1, STEPS), "config.json")) as a, open(os.path.join(ckpt(tp2, STEPS), "config.json")) as b:
        assert json.load(a) == json.load(b)

    # ... so a tp=2 checkpoint resumes at tp=1 with the single-process losses,
    back = str(root / "back_to_tp1")
    train(load_config(recipe, [f"run.output_dir={back}", f"checkpoint.resume={ckpt(tp2, 4)}"]), echo=lambda *a, **k: None)
    assert_same_steps(metrics(back), reference, range(5, STEPS + 1))

    # ... and loads as a plain model (what `mft generate` does).
    import mindspore as ms

    from mft.models import AutoModelForCausalLM

    ids = ms.Tensor(np.array([[1, 5, 9, 2, 7]], np.int32))
    a = AutoModelForCausalLM.from_pretrained(ckpt(tp2, STEPS))(ids).asnumpy()
    b = AutoModelForCausalLM.from_pretrained(ckpt(tp1, STEPS))(ids).asnumpy()
    np.testing.assert_allclose(a, b, atol=1e-4)
