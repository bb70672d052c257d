"""mft.parallel.comm and mappings on real msrun CPU workers, against their definitions.

Each worker runs tests/python/dist_workers/comm_checks.py (through the
product's launcher and worker entry), computes every collective, fallback
and conjugate cell (forward and gradient) in PyNative and in GRAPH_MODE,
compares with numpy and writes rank_<R>.json; here every rank's every
check must be "ok", and the expected checks must all be there. In graph
mode every collective also runs once more with all of them in one graph.
"""

import json
import os

import pytest

from mft.parallel.groups import Layout
from mft.parallel.launch import LaunchSpec, launch

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKS = os.path.join(HERE, "dist_workers", "comm_checks.py")

COLLECTIVES = [
    "all_reduce_sum", "all_reduce_mean", "all_reduce_max", "all_reduce_min", "all_gather_dim0", "all_gather_dim1",
    "broadcast_root0", "broadcast_root1", "reduce_scatter_fallback_dim0_sum", "reduce_scatter_fallback_dim1_mean",
    "all_to_all_fallback_01", "all_to_all_fallback_10", "all_to_all_fallback_11", "shift+1", "shift-1",
    "send_recv_0to1", "send_recv_1to0",
]  # fmt: skip
MAPPINGS = ["copy_to_region", "reduce_from_region", "scatter_to_region", "gather_from_region",
            "reduce_scatter_to_region", "gather_from_sequence_region"]  # fmt: skip


def run_checks(tmp_path, nproc, dp, tp, kinds, env=None):
    out = tmp_path / "out"
    spec = LaunchSpec(nproc=nproc, log_dir=str(tmp_path / "logs"), extra_env=env or {})
    cwd = os.getcwd()
    os.chdir(tmp_path)  # MindSpore drops rank_N/ debug folders into the working directory on errors
    try:
        result = launch(spec, ["-m", "mft.parallel.worker", "run", CHECKS, str(out), str(dp), str(tp), ",".join(kinds)], timeout_s=240)
    finally:
        os.chdir(cwd)
    assert result.returncode == 0, f"rank {result.failed_rank}: {result.error}\n{result.output[-3000:]}"
    reports = {}
    for r in range(nproc):
        with open(out / f"rank_{r}.json") as f:
            reports[r] = json.load(f)
    return reports


def assert_all_ok(reports, kinds_sizes):
    for rank, report in reports.items():
        results = report["results"]
        bad = {k: v for k, v in results.items() if v != "ok"}
        assert not bad, f"rank {rank}: {bad}"
        for mode in ("pynative", "graph"):
            for kind, size in kinds_sizes:
                prefix = f"{mode}/{kind}{size}/"
                for name in COLLECTIVES:
                    if name.startswith("broadcast_root") or name.startswith("send_recv"):
                        continue  # named by ranks; counted below
                    assert prefix + name in results, f"rank {rank}: {prefix + name} missing"
                assert sum(k.startswith(prefix + "broadcast_root") for k in results) == size
                assert sum(k.startswith(prefix + "send_recv") for k in results) == 2
                for name in MAPPINGS:
                    assert prefix + name + "_fwd" in results and prefix + name + "_grad" in results
        for kind, size in kinds_sizes:
            # all collectives in one graph, independent of each other: they must still pair up across ranks
            assert sum(k.startswith(f"graph/{kind}{size}/one_graph/") for k in results) == 17 + size
            for part in ("loss", "dx", "dw1", "dw2"):
                assert f"jit/{kind}{size}/megatron_mlp_{part}" in results


def test_two_workers_world_group(tmp_path):
    """2 workers: AllGather/Broadcast native on the world group, the other collectives' CPU fallbacks."""
    reports = run_checks(tmp_path, 2, 2, 1, ["world"])
    assert_all_ok(reports, [("world", 2)])


def test_four_workers_tensor_parallel_subgroups(tmp_path):
    """4 workers as dp=2 x tp=2: the tp groups {0,1} and {2,3} are sub-groups, where the CPU backend has
    only AllReduce, so all_gather / broadcast / max / min run through their all-reduce fallbacks too."""
    reports = run_checks(tmp_path, 4, 2, 2, ["tp"])
    assert_all_ok(reports, [("tp", 2)])
    assert {tuple(Layout(dp=2, tp=2).group_ranks("tp", r)) for r in range(4)} == {(0, 1), (2, 3)}


def test_megatron_rank_order():
    layout = Layout(dp=2, tp=2, pp=2, cp=1)
    assert layout.world_size == 8
    # tp fastest, then cp, dp, pp
    assert layout.group_ranks("tp", 5) == [4, 5]
    assert layout.group_ranks("dp", 5) == [5, 7]
    assert layout.group_ranks("pp", 5) == [1, 5]
    assert layout.coords(6) == {"tp": 0, "cp": 0, "dp": 1, "pp": 1, "ep": 0, "edp": 2}  # ep=1: edp spans the stage
    cp = Layout(dp=1, tp=2, cp=2)
    assert cp.group_ranks("cp", 1) == [1, 3]
    ep = Layout(dp=4, ep=2)
    assert ep.group_ranks("ep", 3) == [2, 3] and ep.group_ranks("edp", 3) == [1, 3]
    folded = Layout(dp=2, tp=2, pp=2, ep=4)  # experts folded over a stage's dp x tp ranks
    assert folded.group_ranks("ep", 5) == [4, 5, 6, 7] and folded.group_ranks("edp", 5) == [5]
    assert Layout(dp=2, tp=2, ep=2).group_ranks("edp", 1) == [1, 3]
    for kind in ("tp", "cp", "dp", "pp", "ep", "edp"):
        groups = layout.all_groups(kind)
        assert sorted(r for g in groups for r in g) == list(range(layout.world_size))


def test_layout_rejects_bad_values():
    from mft.errors import MftError

    with pytest.raises(MftError, match=r"parallel.ep=3 must divide dp\*cp\*tp=4"):
        Layout(dp=4, ep=3)
    with pytest.raises(MftError, match="parallel.tp must be an integer >= 1"):
        Layout(tp=0)


def test_single_process_collectives_are_identity():
    """Without msrun the world is one process: every collective and conjugate cell is the identity."""
    import numpy as np
    from mindspore import Tensor

    from mft.parallel import comm, mappings

    groups = comm.init_from_env(Layout())
    x = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    for cell in (comm.AllReduce(groups.tp), comm.AllGather(groups.dp, 1), comm.ReduceScatter(groups.tp, 1),
                 comm.AllToAll(groups.tp, 0, 1), comm.Shift(groups.pp), mappings.GatherFromRegion(groups.tp)):  # fmt: skip
        np.testing.assert_array_equal(cell(x).asnumpy(), x.asnumpy())
    from mft.errors import MftError

    with pytest.raises(MftError, match="--nproc 2"):
        comm.init_from_env(Layout(dp=2))
