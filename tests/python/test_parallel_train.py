"""`mft train --nproc N` through msrun: data-parallel parity, rank-0 outputs, fail-fast, two nodes on loopback.

Every subprocess has a timeout, and on timeout the whole tree (msrun, its
scheduler and workers, which msrun puts in sessions of their own) is killed.
"""

from __future__ import annotations

import json
import os
import re

import psutil
import pytest

from msrun_runs import STEPS, assert_same_steps, build_corpus, finish, metrics, run_ok, start, write_recipe
from mft.parallel.launch import free_port


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("dp_corpus"))


def recipe(tmp_path, corpus, name: str) -> tuple[str, str]:
    out = tmp_path / name
    return write_recipe(tmp_path / f"{name}.yaml", corpus, out), str(out)


def leftover_processes(marker: str) -> list[str]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if marker in cmd and "pytest" not in cmd:
            found.append(cmd)
    return found


@pytest.fixture(scope="module")
def single_process_metrics(corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dp1")
    path, out = recipe(tmp, corpus, "dp1")
    run_ok(["train", path], tmp)
    got = metrics(out)
    assert len(got) == STEPS
    return got


def assert_parity(output_dir, reference):
    """The run's per-step losses equal the single-process ones within 1e-5 relative, for all STEPS steps."""
    assert_same_steps(metrics(output_dir), reference, range(1, STEPS + 1), keys=("loss",), complete=True)


def test_gradient_buckets_cover_every_parameter_once_in_reverse_order(monkeypatch):
    from mft.errors import MftError
    from mft.parallel import data_parallel as dpar

    sizes = [10, 300, 5, 5, 40, 1000, 7]
    got = dpar.buckets(sizes, 50)
    assert got == [[6, 5], [4, 3, 2], [1], [0]]  # backward order; each run >= 50 elements but the last
    assert sorted(i for b in got for i in b) == list(range(len(sizes)))
    assert dpar.buckets(sizes, 10**9) == [[6, 5, 4, 3, 2, 1, 0]]  # one flat buffer
    monkeypatch.delenv("MFT_DP_BUCKET_MB", raising=False)
    assert dpar.bucket_elements() == dpar.BUCKET_ELEMENTS == 25 * 262144  # 25 MiB of fp32
    monkeypatch.setenv("MFT_DP_BUCKET_MB", "0.5")
    assert dpar.bucket_elements() == 131072
    for bad in ("0", "-1", "lots"):
        monkeypatch.setenv("MFT_DP_BUCKET_MB", bad)
        with pytest.raises(MftError, match="MFT_DP_BUCKET_MB"):
            dpar.bucket_elements()


def test_dp2_on_two_msrun_workers_matches_single_process(tmp_path, corpus, single_process_metrics, monkeypatch):
    # ~5k-element gradient buckets: the small model's gradients travel in several all-reduces, reassembled in order
    monkeypatch.setenv("MFT_DP_BUCKET_MB", "0.02")
    path, out = recipe(tmp_path, corpus, "dp2")
    rc, stdout, stderr = finish(start(["train", path, "--nproc", "2", "--set", "parallel.dp=2"], tmp_path))
    assert rc == 0, stderr[-3000:] + stdout[-3000:]
    assert_parity(out, single_process_metrics)
    logs = sorted(os.listdir(os.path.join(out, "logs")))
    assert {"rank_0.log", "rank_1.log", "worker_0.log", "worker_1.log"} <= set(logs)
    with open(os.path.join(out, "logs", "rank_1.log")) as f:
        log = f.read()
    assert "step 10 loss" in log  # every rank logs; only rank 0 writes the run files
    # both ranks on this host: the gradients went through shared memory, in several buckets
    buckets = re.search(r"dp gradients: (\d+) bucket\(s\) over shared memory", log)
    assert buckets and int(buckets.group(1)) > 1, log[-2000:]
    assert os.path.isfile(os.path.join(out, "config.yaml"))
    with open(os.path.join(out, "checkpoints", "latest")) as f:
        assert f.read().strip() == "step_00000010"
    with open(os.path.join(out, "checkpoints", "step_00000010", "trainer_state.json")) as f:
        assert json.load(f)["consumed_samples"] == 4 * STEPS  # global samples, not per rank


def test_two_nodes_on_loopback_match_single_process(tmp_path, corpus, single_process_metrics):
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
    assert_parity(out, single_process_metrics)
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
