"""`mft train --nproc N` through msrun: data-parallel parity, rank-0 outputs, fail-fast, two nodes on loopback.

Every subprocess has a timeout, and on timeout the whole tree (msrun, its
scheduler and workers, which msrun puts in sessions of their own) is killed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import psutil
import pytest

from mft.data.preprocess import preprocess
from mft.monitor.metrics import read_metrics
from mft.parallel.launch import free_port, kill_tree
from mft.tokenizer import Tokenizer

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(REPO, "data", "kjv", "kjv.jsonl")
MFT = [sys.executable, "-m", "mft.cli.main"]
STEPS = 10


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp_corpus")
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
        "model": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
                  "max_position_embeddings": 64},
        "train": {"steps": STEPS, "micro_batch_size": 4, "optimizer": {"lr": 3e-3}, "lr_schedule": {"warmup_steps": 2},
                  "clip_grad_norm": 1.0},
        "monitor": {"progress_bar": False, "tensorboard": False},
    }  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path), str(out)


def start(args, cwd):
    return subprocess.Popen(MFT + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip


def finish(proc, timeout=240) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout}s; killed. stdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}")
    return proc.returncode, out, err


def losses(output_dir) -> list[float]:
    return [r["loss"] for r in read_metrics(os.path.join(output_dir, "metrics.jsonl"))]


def leftover_processes(marker: str) -> list[str]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if marker in cmd and "pytest" not in cmd:
            found.append(cmd)
    return found


@pytest.fixture(scope="module")
def single_process_losses(corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dp1")
    path, out = recipe(tmp, corpus, "dp1")
    rc, stdout, stderr = finish(start(["train", path], tmp))
    assert rc == 0, stderr[-3000:]
    got = losses(out)
    assert len(got) == STEPS
    return got


def assert_parity(dp_losses, reference):
    assert len(dp_losses) == STEPS
    rel = np.abs(np.array(dp_losses) - np.array(reference)) / np.abs(np.array(reference))
    assert rel.max() < 1e-5, f"dp=2 {dp_losses}\nvs dp=1 {reference}\n(max relative difference {rel.max():.2e})"


def test_dp2_on_two_msrun_workers_matches_single_process(tmp_path, corpus, single_process_losses):
    path, out = recipe(tmp_path, corpus, "dp2")
    rc, stdout, stderr = finish(start(["train", path, "--nproc", "2", "--set", "parallel.dp=2"], tmp_path))
    assert rc == 0, stderr[-3000:] + stdout[-3000:]
    assert_parity(losses(out), single_process_losses)
    logs = sorted(os.listdir(os.path.join(out, "logs")))
    assert {"rank_0.log", "rank_1.log", "worker_0.log", "worker_1.log"} <= set(logs)
    with open(os.path.join(out, "logs", "rank_1.log")) as f:
        assert "step 10 loss" in f.read()  # every rank logs; only rank 0 writes the run files
    assert os.path.isfile(os.path.join(out, "config.yaml"))
    with open(os.path.join(out, "checkpoints", "latest")) as f:
        assert f.read().strip() == "step_00000010"
    with open(os.path.join(out, "checkpoints", "step_00000010", "trainer_state.json")) as f:
        assert json.load(f)["consumed_samples"] == 4 * STEPS  # global samples, not per rank


def test_two_nodes_on_loopback_match_single_process(tmp_path, corpus, single_process_losses):
    """Two `mft train --nnodes 2 --node-rank R` commands on one host, one worker each. This run also
    accumulates gradients (2 micro-batches of 2): the same global batch of 4, so the same losses."""
    path, out = recipe(tmp_path, corpus, "nodes")
    master = f"127.0.0.1:{free_port()}"
    common = ["train", path, "--nproc", "1", "--nnodes", "2", "--master", master, "--set", "parallel.dp=2",
              "--set", "train.grad_accum_steps=2", "--set", "train.micro_batch_size=2"]  # fmt: skip
    node0 = start(common + ["--node-rank", "0"], tmp_path)
    node1 = start(common + ["--node-rank", "1"], tmp_path)
    rc1, out1, err1 = finish(node1)
    rc0, out0, err0 = finish(node0)
    assert rc0 == 0 and rc1 == 0, f"node0 {rc0}: {err0[-2000:]}\nnode1 {rc1}: {err1[-2000:]}"
    assert_parity(losses(out), single_process_losses)
    assert {"rank_0.log", "rank_1.log"} <= set(os.listdir(os.path.join(out, "logs")))


def test_one_failing_rank_stops_every_worker(tmp_path, corpus):
    """Rank 1 cannot open its log file (a directory sits at logs/rank_1.log): it raises, msrun kills rank 0
    (blocked in a collective), and the command exits non-zero naming rank 1 and its error."""
    path, out = recipe(tmp_path, corpus, "fail")
    os.makedirs(os.path.join(out, "logs", "rank_1.log"))
    rc, stdout, stderr = finish(start(["train", path, "--nproc", "2", "--set", "parallel.dp=2"], tmp_path), timeout=180)
    assert rc != 0
    assert "rank 1 failed: IsADirectoryError" in stderr, stderr[-3000:]
    assert not leftover_processes(path), leftover_processes(path)


def test_layout_and_process_count_must_agree(tmp_path, corpus):
    path, _ = recipe(tmp_path, corpus, "mismatch")
    rc, stdout, stderr = finish(start(["train", path, "--nproc", "2"], tmp_path), timeout=60)
    assert rc == 2 and "parallel layout dp*tp*pp*cp = 1 processes, but --nproc 2" in stderr, stderr
    rc, stdout, stderr = finish(start(["train", path, "--set", "parallel.dp=2"], tmp_path), timeout=120)
    assert rc == 2 and "--nproc 2" in stderr, stderr
