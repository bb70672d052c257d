"""Runs on every msrun worker (via `python -m mft.parallel.worker run`): checks each
collective, fallback and conjugate cell of mft.parallel against its numpy
definition, in PyNative and in GRAPH_MODE, and writes `<out>/rank_<R>.json`
{check name: "ok" or what differed}. Every rank can compute every other
rank's input (a seeded function of the global rank), so the definitions are
evaluated locally.

usage: comm_checks.py OUT_DIR DP TP KIND[,KIND...]   (KIND: world, tp, dp)
"""

import json
import os
import sys

import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops

from mft.parallel import comm, mappings
from mft.parallel.groups import Layout

out_dir, dp, tp, wanted = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
ms.set_device("CPU")
groups = comm.init_from_env(Layout(dp=dp, tp=tp))
rank = groups.rank
results: dict[str, str] = {}


def data(global_rank, shape, salt):
    rng = np.random.default_rng(1000 * salt + global_rank)
    return rng.standard_normal(shape).astype(np.float32)


def record(name, got, want, exact=False):
    got = np.asarray(got.asnumpy() if hasattr(got, "asnumpy") else got)
    if got.shape != want.shape:
        results[name] = f"shape {got.shape} != {want.shape}"
    elif exact and not np.array_equal(got, want):
        results[name] = f"not bit-equal, max diff {np.abs(got - want).max()}"
    elif not np.allclose(got, want, rtol=1e-5, atol=1e-5):
        results[name] = f"max diff {np.abs(got - want).max()}"
    else:
        results[name] = "ok"


class Batch(nn.Cell):
    """Every cell on its own input in ONE graph, no dependencies between them: the collectives
    must still pair up across ranks (each rank's graph has the same structure)."""

    def __init__(self, cells):
        super().__init__()
        self.parts = nn.CellList(cells)

    def construct(self, *xs):
        out = ()
        for i in range(len(self.parts)):
            out = out + (self.parts[i](xs[i]),)
        return out


class Loss(nn.Cell):
    """sum(cell(x) * w): its gradient wrt x is cell's backward applied to dout = w."""

    def __init__(self, cell, w):
        super().__init__()
        self.cell = cell
        self.w = Tensor(w)

    def construct(self, x):
        return (self.cell(x) * self.w).sum()


def collective_checks(kind):
    """[(name, cell, x, want, exact)] for every collective on this rank's `kind` group."""
    g = groups.get(kind)
    n, me, members = g.size, g.rank, g.ranks
    shape = (4, 8)
    xs = [data(r, shape, 1) for r in members]
    x = xs[me]
    stack = np.stack(xs)
    checks = []
    for op, want in (("sum", stack.sum(0)), ("mean", stack.mean(0)), ("max", stack.max(0)), ("min", stack.min(0))):
        checks.append((f"all_reduce_{op}", comm.AllReduce(g, op), x, want, op in ("max", "min")))
    for dim in (0, 1):
        checks.append((f"all_gather_dim{dim}", comm.AllGather(g, dim), x, np.concatenate(xs, dim), True))
    for root in range(n):
        checks.append((f"broadcast_root{root}", comm.Broadcast(g, root), x, xs[root], True))
    for dim in (0, 1):
        for op in ("sum", "mean"):
            want = np.split(stack.sum(0) / (n if op == "mean" else 1), n, dim)[me]
            checks.append((f"reduce_scatter_fallback_dim{dim}_{op}", comm.ReduceScatter(g, dim, op, native=False), x, want, False))
    for split_dim, concat_dim in ((0, 1), (1, 0), (1, 1)):
        want = np.concatenate([np.split(xs[r], n, split_dim)[me] for r in range(n)], concat_dim)
        checks.append((f"all_to_all_fallback_{split_dim}{concat_dim}", comm.AllToAll(g, split_dim, concat_dim, native=False), x, want, True))
    for offset in (1, -1):
        checks.append((f"shift{offset:+d}", comm.Shift(g, offset), x, xs[(me - offset) % n], True))
    for src, dst in ((0, n - 1), (n - 1, 0)):
        checks.append((f"send_recv_{src}to{dst}", comm.SendRecv(g, src, dst), x, xs[src] if me == dst else xs[me], True))
    return checks


def mapping_checks(kind):
    """[(name, cell, x, w, want_fwd, want_grad)] for every conjugate cell on this rank's `kind` group."""
    g = groups.get(kind)
    n, me, members = g.size, g.rank, g.ranks
    full = (8, 12)
    part = (8, 12 // n)
    seq_part = (8 // n, 12)
    xs_full = [data(r, full, 2) for r in members]
    xs_part = [data(r, part, 3) for r in members]
    w_full = [data(r, full, 4) for r in members]
    w_part = [data(r, part, 5) for r in members]
    w_seq = [data(r, seq_part, 6) for r in members]
    seq_of = [np.split(x, n, 0)[i] for i, x in enumerate(xs_full)]
    return [
        ("copy_to_region", mappings.CopyToRegion(g), xs_full[me], w_full[me], xs_full[me], np.sum(w_full, 0)),
        ("reduce_from_region", mappings.ReduceFromRegion(g), xs_full[me], w_full[me], np.sum(xs_full, 0), w_full[me]),
        ("scatter_to_region", mappings.ScatterToRegion(g, -1), xs_full[me], w_part[me],
         np.split(xs_full[me], n, -1)[me], np.concatenate(w_part, -1)),
        ("gather_from_region", mappings.GatherFromRegion(g, -1), xs_part[me], w_full[me],
         np.concatenate(xs_part, -1), np.split(w_full[me], n, -1)[me]),
        ("reduce_scatter_to_region", mappings.ReduceScatterToRegion(g, 0), xs_full[me], w_seq[me],
         np.split(np.sum(xs_full, 0), n, 0)[me], np.concatenate(w_seq, 0)),
        ("gather_from_sequence_region", mappings.GatherFromSequenceRegion(g, 0), seq_of[me], w_full[me],
         np.concatenate(seq_of, 0), np.split(np.sum(w_full, 0), n, 0)[me]),
    ]  # fmt: skip


def run_checks(mode, kind):
    p = f"{mode}/{kind}{groups.get(kind).size}/"
    for name, cell, x, want, exact in collective_checks(kind):
        print("check", p + name, flush=True)
        record(p + name, cell(Tensor(x)), want, exact)
    for name, cell, x, w, want_fwd, want_grad in mapping_checks(kind):
        print("check", p + name, flush=True)
        record(p + name + "_fwd", cell(Tensor(x)), want_fwd)
        record(p + name + "_grad", ms.grad(Loss(cell, w))(Tensor(x)), want_grad)
    if mode == "graph":
        checks = collective_checks(kind)
        print("check", p + "one_graph", flush=True)
        outs = Batch([c[1] for c in checks])(*[Tensor(c[2]) for c in checks])
        for (name, _, _, want, exact), got in zip(checks, outs):
            record(p + "one_graph/" + name, got, want, exact)


def tp_mlp_check(kind):
    """A Megatron MLP (column- then row-parallel) under ms.jit(value_and_grad): loss and grads equal the unsharded MLP's."""
    g = groups.get(kind)
    n, me = g.size, g.rank
    name = f"jit/{kind}{n}/megatron_mlp"
    x = data(0, (3, 8), 7)  # replicated input: the same on every rank
    w1 = data(0, (8, 4 * n), 8)
    w2 = data(0, (4 * n, 8), 9)
    wout = data(0, (3, 8), 10)
    w1_r = w1[:, me * 4:(me + 1) * 4]
    w2_r = w2[me * 4:(me + 1) * 4, :]

    class Mlp(nn.Cell):
        def __init__(self):
            super().__init__()
            self.f = mappings.CopyToRegion(g)
            self.g = mappings.ReduceFromRegion(g)
            self.w1 = ms.Parameter(Tensor(w1_r), name="w1")
            self.w2 = ms.Parameter(Tensor(w2_r), name="w2")
            self.wout = Tensor(wout)

        def construct(self, x):
            h = ops.square(ops.matmul(self.f(x), self.w1))  # (CPU tanh is approximate to 1e-4)
            return (self.g(ops.matmul(h, self.w2)) * self.wout).sum()

    net = Mlp()
    step = ms.jit(ms.value_and_grad(net, grad_position=0, weights=net.trainable_params()))
    loss, (gx, (g1, g2)) = step(Tensor(x))
    a = x.astype(np.float64) @ w1
    h = a**2
    want_loss = float(((h @ w2) * wout).sum())
    dh = (wout @ w2.T) * 2 * a
    record(name + "_loss", np.array(float(loss.asnumpy())), np.array(want_loss))
    record(name + "_dx", gx, (dh @ w1.T).astype(np.float32))
    record(name + "_dw1", g1, (x.T @ dh)[:, me * 4:(me + 1) * 4].astype(np.float32))
    record(name + "_dw2", g2, (h.T @ wout)[me * 4:(me + 1) * 4, :].astype(np.float32))


# world: AllGather/Broadcast native on CPU; tp/dp (sub-groups): their all-reduce fallbacks.
kinds = [k for k in wanted if groups.get(k).size > 1]
for mode in ("pynative", "graph"):
    ms.set_context(mode=ms.PYNATIVE_MODE if mode == "pynative" else ms.GRAPH_MODE)
    for kind in kinds:
        run_checks(mode, kind)
ms.set_context(mode=ms.PYNATIVE_MODE)
for kind in kinds:
    tp_mlp_check(kind)

os.makedirs(out_dir, exist_ok=True)
with open(os.path.join(out_dir, f"rank_{rank}.json"), "w") as f:
    json.dump({"rank": rank, "kinds": kinds, "results": results}, f, indent=1)
