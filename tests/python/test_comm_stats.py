"""mft.parallel.comm_stats: the per-rank byte costs of each collective, and the counting hook (in-process)."""

from __future__ import annotations

import numpy as np
import pytest

from mft.parallel.comm_stats import Call, Ledger


@pytest.mark.parametrize("n", [2, 4])
def test_ring_costs_native_and_as_the_cpu_fallbacks_issue_them(n):
    b = 1000
    ring = 2 * (n - 1) / n * b
    assert Call("all_reduce", n, b, True).cost() == pytest.approx(ring)
    assert Call("all_gather", n, b, True).cost() == pytest.approx((n - 1) * b)
    assert Call("all_gather", n, b, False).cost() == pytest.approx(2 * (n - 1) * b)  # all_reduce of n * b
    assert Call("reduce_scatter", n, b, True).cost() == pytest.approx((n - 1) / n * b)
    assert Call("reduce_scatter", n, b, False).cost() == pytest.approx(ring)  # all_reduce, then a slice
    assert Call("reduce_scatter", n, b, False).cost(native=True) == pytest.approx((n - 1) / n * b)
    assert Call("broadcast", n, b, False).cost() == pytest.approx(ring)
    assert Call("broadcast", n, b, True).cost() == b
    assert Call("all_reduce", 1, b, True).cost() == 0.0  # one rank sends nothing


def test_ledger_totals_by_kind():
    led = Ledger([Call("all_reduce", 2, 400, True), Call("reduce_scatter", 2, 400, False), Call("all_gather", 2, 200, True)])
    t = led.totals()
    assert t["calls"] == 3
    assert t["issued"] == pytest.approx(400 + 400 + 200)
    assert t["native"] == pytest.approx(400 + 200 + 200)  # the reduce-scatter costs half natively
    assert t["by_kind"]["reduce_scatter"] == {"calls": 1, "input_bytes": 400, "issued": 400.0, "native": 200.0}


def test_counting_hooks_the_collectives_and_leaves_them_as_found():
    import mindspore as ms

    from mft.parallel import comm
    from mft.parallel.comm_stats import counting
    from mft.parallel.groups import Group

    single = Group("dp", (0,), 0, None)
    before = {cls: "__call__" in cls.__dict__ for cls in (comm.AllReduce, comm.AllGather, comm.ReduceScatter)}
    with counting() as ledger:
        assert "__call__" in comm.AllReduce.__dict__
        y = comm.AllReduce(single, "mean")(ms.Tensor(np.ones(4, np.float32)))
    np.testing.assert_array_equal(y.asnumpy(), 1.0)
    assert ledger.calls == []  # a group of one communicates nothing
    assert {cls: "__call__" in cls.__dict__ for cls in before} == before
