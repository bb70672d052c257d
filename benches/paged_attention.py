"""Paged decode attention: the C++ kernel (mft.ops.paged_attention, fused) vs the composed MindSpore path.

One decode step of one layer at realistic shapes: every row has one new query
token and `--context` cached tokens in shuffled blocks of a shared pool
(GQA: --heads query heads over --kv-heads). Both paths run in PyNative as ops;
prints the median time per call and the speed-up.

    .venv/bin/python benches/paged_attention.py [--batch 16 --context 1024 --heads 32 --kv-heads 8 --dim 128]

--runner: the whole decode step of `mft serve`'s paged runner instead (llama
test fixture: h64, 2 layers, 4 heads over 2 kv heads, head dim 16; graph mode,
block 16, max-model-len 256 so every step uses the 256-slot cache bucket), the
fused and composed backends interleaved call by call in one process; median
ms per step at batch 1 and 16.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import mindspore as ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--runner", action="store_true", help="time the paged runner's decode step per backend instead")
    args = ap.parse_args()
    ms.set_device("CPU")
    if args.runner:
        return runner_steps(args.repeats * 2 + 1)
    from mft.ops.paged_attention import paged_attention

    rng = np.random.default_rng(0)
    b, ctx, bs = args.batch, args.context, args.block_size
    blocks = -(-ctx // bs)
    slots = (b * blocks + 1) * bs
    tables = (rng.permutation(b * blocks) + 1).reshape(b, blocks).astype(np.int32)
    t = dict(
        q=rng.standard_normal((b, args.heads, 1, args.dim)), k_new=rng.standard_normal((b, args.kv_heads, 1, args.dim)),
        v_new=rng.standard_normal((b, args.kv_heads, 1, args.dim)),
        k_pool=rng.standard_normal((slots, args.kv_heads, args.dim)), v_pool=rng.standard_normal((slots, args.kv_heads, args.dim)),
    )
    t = {k: ms.Tensor(v.astype(np.float32)) for k, v in t.items()}
    t["tables"] = ms.Tensor(tables)
    t["lens"] = ms.Tensor(np.full(b, ctx, np.int32))

    def call(fused):
        return paged_attention(t["q"], t["k_new"], t["v_new"], t["k_pool"], t["v_pool"], t["tables"], t["lens"], bs,
                               fused=fused).asnumpy()

    diff = np.abs(call(True) - call(False)).max()
    times = {}
    for fused in (True, False):
        samples = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            call(fused)
            samples.append(time.perf_counter() - start)
        times[fused] = statistics.median(samples) * 1e3
    print(f"paged decode attention, batch {b} x context {ctx} x heads {args.heads} (kv {args.kv_heads}) x dim {args.dim}, "
          f"block {bs}: fused {times[True]:.2f} ms, composed {times[False]:.2f} ms, speed-up {times[False] / times[True]:.1f}x "
          f"(max |diff| {diff:.1e})")


def runner_steps(repeats: int) -> None:
    import os

    ms.runtime.launch_blocking()  # as mft serve runs
    from mft.models import AutoModelForCausalLM
    from mft.serving.paged_runner import PagedRunner

    fixture = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "hf", "llama")
    model = AutoModelForCausalLM.from_pretrained(fixture)
    bs, blocks = 16, 16 * 16
    runners = {b: PagedRunner(model, blocks * bs + bs, bs, 16, 256, "graph", b) for b in ("fused", "composed")}
    rng = np.random.default_rng(0)
    for rows, ctxlen in ((1, 100), (16, 100), (16, 200)):
        contexts = []
        for _ in range(rows):
            table = rng.permutation(np.arange(1, blocks))[: -(-ctxlen // bs)]
            contexts.append([int(b) * bs + i for b in table for i in range(bs)][:ctxlen])
        tokens, writes = [1] * rows, [0] * rows
        for rn in runners.values():  # compile + warm up
            rn.decode(tokens, contexts, writes)
            rn.decode(tokens, contexts, writes)
        samples = {b: [] for b in runners}
        for _ in range(repeats):
            for b, rn in runners.items():
                start = time.perf_counter()
                rn.decode(tokens, contexts, writes)
                samples[b].append(time.perf_counter() - start)
        print(f"runner decode step, batch {rows}, context {ctxlen} (bucket 256): "
              + ", ".join(f"{b} {statistics.median(s) * 1e3:.2f} ms" for b, s in samples.items()), flush=True)


if __name__ == "__main__":
    main()
