"""The msrun command line and launch-argument checks (no workers started here)."""

import json
import os

import pytest

from mft.errors import MftError
from mft.parallel.launch import LaunchSpec, first_failure, msrun_command, parse_master, write_failure


def test_msrun_command_for_a_node_of_a_two_node_run(tmp_path):
    spec = LaunchSpec(nproc=4, nnodes=2, node_rank=1, master="10.0.0.5:29500", log_dir=str(tmp_path))
    cmd = msrun_command(spec, ["-m", "mft.parallel.worker", "train", "a.yaml"])
    assert cmd[1:3] == ["-m", "mindspore.parallel.cluster.run"]
    for arg in ("--worker_num=8", "--local_worker_num=4", "--master_addr=10.0.0.5", "--master_port=29500",
                "--node_rank=1", f"--log_dir={tmp_path}", "--join=True"):  # fmt: skip
        assert arg in cmd
    assert cmd[-5:] == ["python", "-m", "mft.parallel.worker", "train", "a.yaml"]


def test_single_node_picks_a_free_local_port(tmp_path):
    cmd = msrun_command(LaunchSpec(nproc=2, log_dir=str(tmp_path)), ["x.py"])
    port = int(next(a for a in cmd if a.startswith("--master_port=")).split("=")[1])
    assert "--master_addr=127.0.0.1" in cmd and 1024 <= port <= 65535


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(nproc=0), "--nproc must be >= 1"),
        (dict(nproc=1, nnodes=2, node_rank=2, master="h:2000"), r"--node-rank 2 is outside 0..1"),
        (dict(nproc=1, nnodes=2), "--nnodes > 1 needs --master HOST:PORT"),
    ],
)
def test_bad_launch_arguments(tmp_path, kwargs, message):
    with pytest.raises(MftError, match=message):
        LaunchSpec(log_dir=str(tmp_path), **kwargs)


@pytest.mark.parametrize("master", ["localhost", "h:", ":2000", "h:80", "h:port"])
def test_bad_master(master):
    with pytest.raises(MftError, match="expected HOST:PORT"):
        parse_master(master)


def test_the_earliest_failure_is_reported(tmp_path):
    write_failure(str(tmp_path), 1, "ValueError: first")
    write_failure(str(tmp_path), 0, "RuntimeError: blocked peer gave up later")
    assert first_failure(str(tmp_path)) == (1, "ValueError: first")
    record = json.loads((tmp_path / "rank_0.error").read_text())
    assert record["rank"] == 0 and record["error"].startswith("RuntimeError")


def test_a_worker_killed_without_a_report_is_found_in_its_log(tmp_path):
    (tmp_path / "worker_0.log").write_text("step 1\n")
    (tmp_path / "worker_3.log").write_text("step 1\nSegmentation fault (core dumped)\n")
    assert first_failure(str(tmp_path)) == (3, "Segmentation fault (core dumped)")
    assert not os.path.exists(tmp_path / "rank_3.error")
