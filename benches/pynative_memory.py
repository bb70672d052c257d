"""RSS growth of repeated, identical MindSpore PyNative calls, case by case, each case in its own process.

For each case: warm-up calls, then `--rounds` blocks of `--calls` calls; after each block it prints
the RSS (from /proc/self/statm) and glibc's malloc statistics (mallinfo2: bytes in use by malloc,
bytes free inside the heap), so growth in "in use" is memory something still holds, while growth
in "free" with "in use" flat is the allocator keeping freed memory. With `--trim` the RSS after
malloc_trim(0) is printed too.

    python benches/pynative_memory.py [--calls 1000] [--rounds 4] [--only CASE ...] [--trim]
    MALLOC_ARENA_MAX=1 python benches/pynative_memory.py ...
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python benches/pynative_memory.py ...

Cases (`--only`): noop, tensor, from_numpy, tensor_int, add, add_asnumpy, tensor_add_asnumpy, scatter_update,
cell, cell_asnumpy, ops6 (the cell's ops bare), llama / llama_asnumpy (a tiny llama forward, 3 x 20 tokens) and
one op alone, `op:NAME` (matmul, matmul_pre_t, mint_matmul, linear, dense_op, prim_matmul, bias_add, relu,
transpose, dense, softmax, mint_softmax, sum, mean_keepdims, cast, concat, mul_scalar). "pool" is the resident
part of MindSpore's CPU memory pool; results and the cause: benches/README.md "PyNative memory growth per call".

`--env KEY=VALUE` sets an environment variable in every child (e.g. MS_DEV_... switches);
`--context KEY=VALUE` is passed to ms.set_context in every child (values parsed as Python literals).
"""

from __future__ import annotations

import argparse
import ast
import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]


def _libc():
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def pool_rss_mb() -> float:
    """RSS of anonymous mappings of 512 MB or more: on CPU, MindSpore's memory pool reserves its first block
    as one 1 GB malloc (an mmap), whose pages become resident as the pool hands them out."""
    total = 0
    big = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                big = hi - lo >= 512 * 2**20 and len(head) == 5
            elif big and head[0] == "Rss:":
                total += int(head[1])
    return total / 1024


def malloc_stats(libc) -> dict:
    """In use / free bytes of glibc malloc (all arenas, mmapped chunks counted as in use); {} without glibc
    or when another allocator is preloaded (its mallinfo2, if any, is not glibc's)."""
    if libc is None or os.environ.get("LD_PRELOAD") or not hasattr(libc, "mallinfo2"):
        return {}
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return {"in_use_mb": (m.uordblks + m.hblkhd) / 2**20, "free_mb": m.fordblks / 2**20}


def build_case(name: str):
    """Returns a function doing one call of the case (all inputs made once, here)."""
    import mindspore as ms
    import numpy as np
    from mindspore import mint, nn, ops

    a = ms.Tensor(np.ones((4, 16), np.float32))
    b = ms.Tensor(np.ones((4, 16), np.float32))
    host = np.arange(64, dtype=np.float32).reshape(4, 16)
    ids = np.array([1, 3], np.int32)

    if name == "tensor":  # two small tensors from numpy, as a serving step makes its inputs
        return lambda: (ms.Tensor(host), ms.Tensor(ids))
    if name == "from_numpy":
        return lambda: (ms.from_numpy(host), ms.from_numpy(ids))
    if name == "tensor_int":  # from a Python list
        return lambda: ms.Tensor([1, 3], ms.int32)
    if name == "add":
        return lambda: ops.add(a, b)
    if name == "add_asnumpy":
        return lambda: ops.add(a, b).asnumpy()
    if name == "tensor_add_asnumpy":
        return lambda: ops.add(ms.Tensor(host), b).asnumpy()
    if name == "scatter_update":
        p = ms.Parameter(ms.Tensor(np.zeros((8, 16), np.float32)), name="p")
        idx = ms.Tensor(ids)
        upd = ms.Tensor(np.ones((2, 16), np.float32))
        return lambda: ops.scatter_update(p, idx, upd)
    if name in ("cell", "cell_asnumpy"):
        class Tiny(nn.Cell):
            def __init__(self):
                super().__init__()
                self.d1 = nn.Dense(16, 32)
                self.d2 = nn.Dense(32, 16)

            def construct(self, x):
                return self.d2(ops.relu(self.d1(x))) + x

        net = Tiny()
        if name == "cell":
            return lambda: net(a)
        return lambda: net(a).asnumpy()
    if name == "ops6":  # the cell's six ops, called bare
        w1 = ms.Tensor(np.full((32, 16), 0.01, np.float32))
        w2 = ms.Tensor(np.full((16, 32), 0.01, np.float32))
        b1 = ms.Tensor(np.zeros(32, np.float32))
        b2 = ms.Tensor(np.zeros(16, np.float32))
        return lambda: ops.add(ops.bias_add(ops.matmul(ops.relu(ops.bias_add(ops.matmul(a, w1.T), b1)), w2.T), b2), a)
    if name.startswith("op:"):  # one op alone on the cell's shapes: op:matmul, op:bias_add, op:relu, op:transpose
        w = ms.Tensor(np.full((32, 16), 0.01, np.float32))
        bias = ms.Tensor(np.zeros(16, np.float32))
        single = {"matmul": lambda: ops.matmul(a, w.T), "matmul_pre_t": (lambda wt: lambda: ops.matmul(a, wt))(w.T),
                  "bias_add": lambda: ops.bias_add(a, bias), "relu": lambda: ops.relu(a), "transpose": lambda: w.T,
                  "dense": (lambda d: lambda: d(a))(nn.Dense(16, 32)),
                  "mint_matmul": (lambda wt: lambda: mint.matmul(a, wt))(ms.Tensor(np.full((16, 32), 0.01, np.float32))),
                  "softmax": lambda: ops.softmax(a, axis=-1), "mint_softmax": lambda: mint.nn.functional.softmax(a, dim=-1),
                  "sum": lambda: ops.sum(a, dim=-1), "mean_keepdims": lambda: a.mean(-1, keep_dims=True),
                  "cast": lambda: ops.cast(a, ms.float16), "concat": lambda: ops.concat((a, a), axis=0),
                  "mul_scalar": lambda: a * 2.0, "linear": lambda: mint.nn.functional.linear(a, w),
                  "dense_op": lambda: ops.dense(a, w), "prim_matmul": (lambda p: lambda: p(a, w))(ops.MatMul(transpose_b=True))}
        return single[name[3:]]
    if name.startswith("llama"):  # tiny llama (h64, 2 layers) forward on 3 x 20 tokens: llama, llama_asnumpy
        from mft.models import AutoModelForCausalLM
        from mft.models.llama import LlamaConfig

        ms.set_seed(0)
        model = AutoModelForCausalLM.from_config(LlamaConfig(
            vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256))
        model.set_train(False)
        ids = ms.Tensor(np.arange(60, dtype=np.int32).reshape(3, 20) % 256)
        if name == "llama":
            return lambda: model(ids)
        return lambda: model(ids).asnumpy()
    if name == "noop":  # the loop itself
        return lambda: None
    raise SystemExit(f"unknown case {name!r}")


CASES = ["noop", "ops6", "tensor", "from_numpy", "tensor_int", "add", "add_asnumpy", "tensor_add_asnumpy",
         "scatter_update", "cell", "cell_asnumpy"]


def wrap(fn, how: str):
    """The same call inside a PyNative bracket (the experiments of the README's table)."""
    from mindspore.common.api import _pynative_executor as ex

    if how == "none":
        return fn
    if how == "empty_graph":
        def call():
            ex.new_empty_graph()
            out = fn()
            ex.end_empty_graph()
            return out
        return call
    if how == "sync":
        def call():
            out = fn()
            ex.sync()
            return out
        return call
    raise SystemExit(f"unknown --wrap {how!r}")


def child(name: str, calls: int, rounds: int, warmup: int, trim: bool, context: dict, how: str = "none",
          clear_res: bool = False) -> None:
    import mindspore as ms

    ms.set_context(mode=ms.PYNATIVE_MODE, **context)
    libc = _libc()
    fn = wrap(build_case(name), how)
    for _ in range(warmup):
        fn()
    start = rss_mb()
    start_pool = pool_rss_mb()
    start_malloc = malloc_stats(libc)
    start_blocks = sys.getallocatedblocks()
    rows = []
    for r in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        dt = time.perf_counter() - t0
        if clear_res:
            from mindspore.common.api import _pynative_executor
            _pynative_executor.clear_res()
        row = {"round": r, "rss_mb": rss_mb(), "pool_mb": pool_rss_mb(), "us_per_call": dt / calls * 1e6, **malloc_stats(libc),
               "py_blocks": sys.getallocatedblocks()}
        if trim and libc is not None:
            libc.malloc_trim(0)
            row["rss_after_trim_mb"] = rss_mb()
        rows.append(row)
    print(json.dumps({"case": name, "start_rss_mb": start, "start_malloc": start_malloc,
                      "start_py_blocks": start_blocks,
                      "start_pool_mb": start_pool, "rows": rows}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--trim", action="store_true")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--context", action="append", default=[])
    ap.add_argument("--wrap", default="none", help="none | empty_graph | sync: what brackets each call")
    ap.add_argument("--clear-res", action="store_true", help="_pynative_executor.clear_res() after each block")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    context = {}
    for kv in args.context:
        k, v = kv.split("=", 1)
        try:
            context[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            context[k] = v
    if args.child:
        child(args.child, args.calls, args.rounds, args.warmup, args.trim, context, args.wrap, args.clear_res)
        return
    env = dict(os.environ)
    for kv in args.env:
        k, v = kv.split("=", 1)
        env[k] = v
    extra = {k: env[k] for k in ("MALLOC_ARENA_MAX", "LD_PRELOAD") if k in env}
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  load {os.getloadavg()[0]:.1f}  "
          f"{extra} {args.env} {context} wrap={args.wrap} clear_res={args.clear_res}")
    print(f"{'case':<20} {'start MB':>9}  growth per {args.calls} calls (MB, RSS)    "
          f"{'pool':>8} {'malloc in use':>14} {'malloc free':>12} {'py blocks':>9}  us/call")
    for name in args.only or CASES:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--calls", str(args.calls),
               "--rounds", str(args.rounds), "--warmup", str(args.warmup)]
        cmd += [x for kv in args.context for x in ("--context", kv)] + ["--wrap", args.wrap]
        if args.clear_res:
            cmd.append("--clear-res")
        if args.trim:
            cmd.append("--trim")
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if out.returncode != 0 or not line:
            print(f"{name:<20} failed: {out.stderr.strip().splitlines()[-1:] }")
            continue
        res = json.loads(line[-1])
        prev = res["start_rss_mb"]
        growth = []
        for row in res["rows"]:
            growth.append(row["rss_mb"] - prev)
            prev = row.get("rss_after_trim_mb", row["rss_mb"])
        rows = res["rows"]
        used = free = ""
        n = max(len(rows) - 1, 1)
        if res["start_malloc"] and len(rows) > 1:
            # from the end of the first block to the last, per block: the first block may reserve a pool once
            used = f"{(rows[-1]['in_use_mb'] - rows[0]['in_use_mb']) / n:+.2f}"
            free = f"{(rows[-1]['free_mb'] - rows[0]['free_mb']) / n:+.2f}"
        blocks = (rows[-1]["py_blocks"] - rows[0]["py_blocks"]) / n
        pool = (rows[-1]["pool_mb"] - res["start_pool_mb"]) / len(rows)
        us = sorted(r["us_per_call"] for r in rows)[len(rows) // 2]
        trimmed = ""
        if args.trim:
            trimmed = f"  after trim {rows[-1]['rss_after_trim_mb'] - res['start_rss_mb']:+.1f}"
        print(f"{name:<20} {res['start_rss_mb']:9.1f}  {' '.join(f'{g:+6.2f}' for g in growth):<34}"
              f"{pool:+8.2f} {used:>14} {free:>12} {blocks:+9.0f}  {us:7.1f}{trimmed}")


if __name__ == "__main__":
    main()
