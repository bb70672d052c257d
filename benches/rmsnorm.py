"""Fused C++ RMSNorm vs the composed MindSpore reference, on CPU.

Both run as jit-compiled graphs (as in a train step): forward alone, and
forward + backward via value_and_grad w.r.t. x and weight. Prints the median
time per call and the speed-up of fused over the reference, same run.

    .venv/bin/python benches/rmsnorm.py [--repeat N] [--dtype float32|float16]
"""

import argparse
import statistics
import time

import numpy as np

import mindspore as ms
from mindspore import Tensor

from mft.ops import rms_norm

SHAPES = [(4, 128, 256), (4, 512, 1024), (2, 1024, 4096)]
EPS = 1e-6


def build(fused, with_grad):
    def fwd(x, w, dy):
        return (rms_norm(x, w, EPS, fused=fused) * dy).sum()

    def forward_only(x, w, dy):
        return rms_norm(x, w, EPS, fused=fused)

    if with_grad:
        return ms.jit(ms.value_and_grad(fwd, grad_position=(0, 1)))
    return ms.jit(forward_only)


def sync(out):
    # asnumpy waits for the result; walk tuples of outputs.
    if isinstance(out, (tuple, list)):
        for o in out:
            sync(o)
    else:
        out.asnumpy()


def time_fn(fn, args, repeat):
    sync(fn(*args))  # compile + warm up
    sync(fn(*args))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sync(fn(*args))
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    args = ap.parse_args()
    ms.set_device("CPU")
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    print(f"RMSNorm, {args.dtype}, median of {args.repeat} calls (ms); ratio = reference / fused")
    print(f"{'shape':>18} {'pass':>8} {'reference':>10} {'fused':>8} {'ratio':>6}")
    for shape in SHAPES:
        x = Tensor(rng.standard_normal(shape).astype(dtype))
        w = Tensor(rng.uniform(0.5, 1.5, shape[-1]).astype(dtype))
        dy = Tensor(rng.standard_normal(shape).astype(dtype))
        for with_grad in (False, True):
            t_ref = time_fn(build(False, with_grad), (x, w, dy), args.repeat)
            t_fused = time_fn(build(True, with_grad), (x, w, dy), args.repeat)
            label = "fwd+bwd" if with_grad else "fwd"
            print(f"{str(shape):>18} {label:>8} {t_ref * 1e3:10.3f} {t_fused * 1e3:8.3f} {t_ref / t_fused:6.2f}x")


if __name__ == "__main__":
    main()
