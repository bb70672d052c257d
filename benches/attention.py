"""Fused C++ flash attention vs MindSpore-composed attention, CPU, one run.

Composed = what models do without the kernel: matmul(q, k^T) * scale, causal
mask, fp32 softmax, matmul(probs, v) (mft.ops.attention_reference). Both run
as jit-compiled forward+backward (value_and_grad w.r.t. q, k, v), as in a
train step. Each (impl, shape) runs in its own subprocess so its peak memory
is that process's ru_maxrss; the table shows the growth of the peak over the
process's own baseline (after imports and input creation), i.e. what the
attention forward+backward needed.

A second table puts the kernel against the machine's matmul ceiling: numpy's
sgemm (2048^3 fp32, numpy's own threads) timed in the same process as the
kernel, best of N each, interleaved with the kernel runs so both see the same
load. The kernel's FLOPs are those of its tile products on the causal
triangle: S^2 * D per product per head (half of a full 2 * S^2 * D), 2
products forward (Q K^T, P V) and 5 backward (Q K^T recomputed, dO V^T,
P^T dO, dS^T Q, dS K), so seq 2048, dim 128, 8 heads is 30.1 GFLOP fwd+bwd.
It reports the raw kernels (mft._kernels, fwd, bwd, fwd+bwd) and the
MindSpore op (jitted value_and_grad, as in a train step) as a fraction of
that ceiling. The machine is shared: the sgemm spread (slowest/fastest run)
is printed as the noise measure.

    .venv/bin/python benches/attention.py [--repeat N] [--seqs 512,1024,2048] [--dims 64,128]
    .venv/bin/python benches/attention.py --ceiling-only --seqs 2048 --dims 128 --repeat 5 [--single-thread]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def child(impl, b, h, kvh, s, d, repeat):
    import numpy as np

    import mindspore as ms
    from mindspore import Tensor

    from mft.ops.attention import flash_attention

    ms.set_device("CPU")
    rng = np.random.default_rng(0)
    q = Tensor(rng.standard_normal((b, h, s, d)).astype(np.float32))
    k = Tensor(rng.standard_normal((b, kvh, s, d)).astype(np.float32))
    v = Tensor(rng.standard_normal((b, kvh, s, d)).astype(np.float32))
    w = Tensor(rng.standard_normal((b, h, s, d)).astype(np.float32))
    fused = impl == "fused"

    def loss(q, k, v):
        return (flash_attention(q, k, v, fused=fused) * w).sum()

    step = ms.jit(ms.value_and_grad(loss, grad_position=(0, 1, 2)))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        out = step(q, k, v)
        out[0].asnumpy()
        for g in out[1]:
            g.asnumpy()
        if i:  # the first call compiles
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"time": statistics.median(times), "mem_mb": (peak - base) / 1024}))


def best_of(fn, repeat, clock=time.perf_counter):
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times), max(times)


def ceiling_child(b, h, kvh, s, d, repeat):
    """Raw kernels, the jitted op and numpy sgemm, interleaved, in one process."""
    import numpy as np

    import mindspore as ms
    from mindspore import Tensor

    from mft import _kernels
    from mft.ops.attention import flash_attention

    ms.set_device("CPU")
    rng = np.random.default_rng(0)
    q, dout = (rng.standard_normal((b, h, s, d)).astype(np.float32) for _ in range(2))
    k, v = (rng.standard_normal((b, kvh, s, d)).astype(np.float32) for _ in range(2))
    scale = d**-0.5
    out, lse = _kernels.attention_forward(q, k, v, scale)
    a = rng.standard_normal((2048, 2048)).astype(np.float32)
    w = Tensor(dout)

    def loss(q, k, v):
        return (flash_attention(q, k, v) * w).sum()

    step = ms.jit(ms.value_and_grad(loss, grad_position=(0, 1, 2)))
    tq, tk, tv = Tensor(q), Tensor(k), Tensor(v)

    def op():
        res = step(tq, tk, tv)
        res[0].asnumpy()
        for g in res[1]:
            g.asnumpy()

    op()  # compile
    best = {"sgemm": [], "fwd": [], "bwd": [], "op": []}
    fns = {
        "sgemm": lambda: a @ a,
        "fwd": lambda: _kernels.attention_forward(q, k, v, scale),
        "bwd": lambda: _kernels.attention_backward(dout, q, k, v, out, lse, scale),
        "op": op,
    }
    # One thread each (--single-thread): process CPU time, which other jobs on a
    # shared machine disturb far less than wall time.
    clock = time.process_time if os.environ.get("MFT_ATTENTION_THREADS") == "1" else time.perf_counter
    for _ in range(repeat):  # interleaved rounds: every timing sees the same load
        for name, fn in fns.items():
            best[name].append(best_of(fn, 1, clock)[0])
    res = {name: min(ts) for name, ts in best.items()}
    res["sgemm_spread"] = max(best["sgemm"]) / min(best["sgemm"])
    res["threads"] = _kernels.attention_threads()
    print(json.dumps(res))


def ceiling_table(a):
    env = dict(os.environ, GLOG_v="3")
    how = "wall time, numpy's and the kernel's default threads"
    if a.single_thread:
        env.update(MFT_ATTENTION_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        how = "one thread each, process CPU time"
    print(f"\nvs the sgemm ceiling: batch=1, heads=kv_heads={a.heads}, causal, fp32; best of {a.repeat} "
          f"interleaved rounds; ceiling = numpy sgemm 2048^3 in the same process; {how}")
    print(f"{'seq':>5} {'dim':>4} | {'sgemm GF/s':>10} {'spread':>6} | {'fwd ms':>7} {'ceil':>5} | "
          f"{'bwd ms':>7} {'ceil':>5} | {'f+b ms':>7} {'GF/s':>5} {'ceil':>5} | {'op f+b ms':>9} {'ceil':>5}")
    for d in map(int, a.dims.split(",")):
        for s in map(int, a.seqs.split(",")):
            cmd = [sys.executable, __file__, "--ceiling-child", f"1,{a.heads},{a.heads},{s},{d}",
                   "--repeat", str(a.repeat)]
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode != 0:
                print(f"{s:>5} {d:>4} | failed: {res.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            ceil = 2 * 2048**3 / r["sgemm"]
            prod = s * s * d * a.heads  # FLOPs of one causal tile product over all heads
            frac = lambda n, t: n * prod / t / ceil  # noqa: E731
            fb = r["fwd"] + r["bwd"]
            print(f"{s:>5} {d:>4} | {ceil / 1e9:>10.0f} {r['sgemm_spread']:>5.2f}x | "
                  f"{r['fwd'] * 1e3:>7.0f} {frac(2, r['fwd']):>5.0%} | {r['bwd'] * 1e3:>7.0f} {frac(5, r['bwd']):>5.0%} | "
                  f"{fb * 1e3:>7.0f} {7 * prod / fb / 1e9:>5.0f} {frac(7, fb):>5.0%} | "
                  f"{r['op'] * 1e3:>9.0f} {frac(7, r['op']):>5.0%}", flush=True)


def run(impl, shape, repeat):
    cmd = [sys.executable, __file__, "--child", impl, ",".join(map(str, shape)), "--repeat", str(repeat)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, GLOG_v="3"))
    if res.returncode != 0:
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seqs", default="512,1024,2048")
    ap.add_argument("--dims", default="64,128")
    ap.add_argument("--heads", type=int, default=8, help="batch=1, heads=kv_heads=this")
    ap.add_argument("--ceiling-only", action="store_true", help="only the table against numpy's sgemm")
    ap.add_argument("--single-thread", action="store_true",
                    help="ceiling table with one thread each, timed by process CPU time")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--ceiling-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        b, h, kvh, s, d = map(int, a.child[1].split(","))
        return child(a.child[0], b, h, kvh, s, d, a.repeat)
    if a.ceiling_child:
        return ceiling_child(*map(int, a.ceiling_child.split(",")), a.repeat)
    if a.ceiling_only:
        return ceiling_table(a)
    print("fwd+bwd, jitted, fp32, causal; batch=1, heads=%d; time = median of %d; "
          "mem = peak RSS growth" % (a.heads, a.repeat))
    print(f"{'seq':>5} {'dim':>4} | {'composed ms':>11} {'fused ms':>9} {'speedup':>7} | "
          f"{'composed MB':>11} {'fused MB':>9} {'mem ratio':>9}")
    for d in map(int, a.dims.split(",")):
        for s in map(int, a.seqs.split(",")):
            shape = (1, a.heads, a.heads, s, d)
            ref, fus = run("composed", shape, a.repeat), run("fused", shape, a.repeat)
            if ref is None or fus is None:
                print(f"{s:>5} {d:>4} | failed (out of memory?)")
                continue
            print(f"{s:>5} {d:>4} | {ref['time'] * 1e3:>11.1f} {fus['time'] * 1e3:>9.1f} "
                  f"{ref['time'] / fus['time']:>6.2f}x | {ref['mem_mb']:>11.1f} {fus['mem_mb']:>9.1f} "
                  f"{ref['mem_mb'] / max(fus['mem_mb'], 0.1):>8.1f}x", flush=True)
    ceiling_table(a)


if __name__ == "__main__":
    main()
