"""Fused C++ flash attention vs MindSpore-composed attention, CPU, one run.

Composed = what models do without the kernel: matmul(q, k^T) * scale, causal
mask, fp32 softmax, matmul(probs, v) (mft.ops.attention_reference). Both run
as jit-compiled forward+backward (value_and_grad w.r.t. q, k, v), as in a
train step. Each (impl, shape) runs in its own subprocess so its peak memory
is that process's ru_maxrss; the table shows the growth of the peak over the
process's own baseline (after imports and input creation), i.e. what the
attention forward+backward needed.

    .venv/bin/python benches/attention.py [--repeat N] [--seqs 512,1024,2048] [--dims 64,128]
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
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        b, h, kvh, s, d = map(int, a.child[1].split(","))
        return child(a.child[0], b, h, kvh, s, d, a.repeat)
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


if __name__ == "__main__":
    main()
