"""Shared helpers of the msrun training tests (test_*_parallel_train.py, test_parallel_train.py, test_zero_train.py).

A plain module the tests import (pytest's default import mode puts tests/python on sys.path): a tiny
tokenized corpus, a recipe writer with small-model defaults, `mft train` subprocesses that are killed as
a whole tree on timeout, an in-process reference run, and readers/comparisons of metrics and
checkpoints. Nothing here runs on import; each test file keeps its own module-scoped fixtures.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mft.monitor.metrics import read_metrics
from mft.parallel.launch import kill_tree

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(REPO, "data", "kjv", "kjv.jsonl")
MFT = [sys.executable, "-m", "mft.cli.main"]
STEPS = 10
REL = 1e-5

# The defaults of every section write_recipe fills; a test's overrides replace single keys of a section.
TINY_MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
              "max_position_embeddings": 64}  # fmt: skip
TRAIN = {"steps": STEPS, "micro_batch_size": 4, "optimizer": {"lr": 3e-3}, "lr_schedule": {"warmup_steps": 2},
         "clip_grad_norm": 1.0}  # fmt: skip
MONITOR = {"progress_bar": False, "tensorboard": False}


def build_corpus(root, vocab_size: int = 384):
    """The first 40 KJV lines under `root`: slice.jsonl, a trained tokenizer.json and the tokenized `data` prefix."""
    from mft.data.preprocess import preprocess
    from mft.tokenizer import Tokenizer

    src = root / "slice.jsonl"
    with open(CORPUS, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as out:
        for _, line in zip(range(40), f):
            out.write(line)
    tok = Tokenizer.train([str(src)], vocab_size=vocab_size)
    tok.save(str(root / "tokenizer.json"))
    preprocess([str(src)], tok, str(root / "data"))
    return root


def write_recipe(path, corpus, output_dir, *, seed: int = 11, seq_len: int = 32, model=None, train=None,
                 checkpoint=None, monitor=None) -> str:  # fmt: skip
    """Writes a recipe over `corpus` (from build_corpus) to `path`; returns the path as a string.

    `model`, `train` and `monitor` update TINY_MODEL, TRAIN and MONITOR key by key; `checkpoint` is
    the whole section (left out when None)."""
    import yaml

    cfg = {
        "run": {"output_dir": str(output_dir), "seed": seed},
        "tokenizer": {"path": str(corpus / "tokenizer.json")},
        "data": {"prefix": str(corpus / "data"), "seq_len": seq_len},
        "model": {**TINY_MODEL, **(model or {})},
        "train": {**TRAIN, **(train or {})},
        "monitor": {**MONITOR, **(monitor or {})},
    }
    if checkpoint is not None:
        cfg["checkpoint"] = checkpoint
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def train_args(recipe: str, overrides=(), nproc: int | None = None) -> list[str]:
    """`train RECIPE [--nproc N] --set O ...` for `mft`."""
    args = ["train", recipe] + (["--nproc", str(nproc)] if nproc is not None else [])
    for o in overrides:
        args += ["--set", o]
    return args


def start(args, cwd) -> subprocess.Popen:
    """`mft ARGS` in its own session, so kill_tree can end msrun with its scheduler and workers."""
    return subprocess.Popen(MFT + list(args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip


def finish(proc, timeout: float = 240) -> tuple[int, str, str]:
    """Waits for `proc`; on timeout kills its whole tree and fails the test. Returns (returncode, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout}s; killed. stdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}")
    return proc.returncode, out, err


def run_ok(args, cwd, timeout: float = 240) -> str:
    """`mft ARGS`, which must exit 0 within `timeout`; returns its stdout."""
    rc, out, err = finish(start(args, cwd), timeout)
    assert rc == 0, err[-3000:] + out[-3000:]
    return out


def train_in_process(recipe: str, overrides=()) -> None:
    """The single-process reference run, in this process (no subprocess import cost)."""
    from mft.config import load_config
    from mft.training.trainer import train

    train(load_config(recipe, list(overrides)), echo=lambda *a, **k: None)


def metrics(output_dir) -> dict[int, dict]:
    """metrics.jsonl of a run, by step."""
    return {r["step"]: r for r in read_metrics(os.path.join(output_dir, "metrics.jsonl"))}


def ckpt(output_dir, step: int) -> str:
    return os.path.join(output_dir, "checkpoints", f"step_{step:08d}")


def assert_same_steps(got: dict, want: dict, steps, keys=("loss", "grad_norm"), rel: float = REL,
                      complete: bool = False) -> None:  # fmt: skip
    """`got[s][key]` equals `want[s][key]` within `rel` relative for every step s and key; with `complete`,
    `got` must also hold exactly `steps`."""
    steps = list(steps)
    if complete:
        assert sorted(got) == steps
    for key in keys:
        a = np.array([got[s][key] for s in steps])
        b = np.array([want[s][key] for s in steps])
        diff = np.abs(a - b) / np.abs(b)
        assert diff.max() < rel, f"{key}: {a} vs single process {b} (max relative difference {diff.max():.2e})"


def assert_same_tensors(folder, reference_folder, names=("model.safetensors", "optimizer.safetensors"),
                        rtol: float = 0, atol: float = 5e-5, label: str = "") -> None:  # fmt: skip
    """Each safetensors file of `names` in `folder` holds the tensors of the one in `reference_folder`:
    the same names and shapes, values within rtol/atol."""
    from mft.weights.safetensors import load_file

    for name in names:
        want = load_file(os.path.join(reference_folder, name))
        have = load_file(os.path.join(folder, name))
        assert set(have) == set(want), name
        for k in want:
            assert have[k].shape == want[k].shape, k
            np.testing.assert_allclose(have[k], want[k], rtol=rtol, atol=atol, err_msg=f"{label}{name}: {k}")
