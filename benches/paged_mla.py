"""MLA decode attention over the paged latent cache: the C++ kernel (mft.ops.paged_mla, absorbed form)
vs the composed MindSpore reference, and `mft serve`'s whole MLA decode step fused vs composed.

Default: one decode step of one layer's attention core at DeepSeek-V3 widths (kv_lora_rank 512, rope key
64; --heads query heads, e.g. 128 / tp): every row has one new query and `--context` cached tokens in
shuffled blocks of a shared pool. Both run in PyNative as ops; median ms per call and the speed-up.

    .venv/bin/python benches/paged_mla.py [--batch 8 --context 1024 --heads 16]

--runner: the paged runner's whole decode step on the DeepSeek-V3 test fixture (h64, 2 layers, 4 heads,
kv_lora_rank 32, rope 8; graph mode, block 16, max-model-len 256): the fused backend (absorbed MLA on the
kernel over the pools in place) and the composed one (gather the latent cache bucket, expand it through
kv_b_proj, attend) interleaved call by call in one process; median ms per step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import mindspore as ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--rank", type=int, default=512)
    ap.add_argument("--rope-dim", type=int, default=64)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--runner", action="store_true", help="time the paged runner's MLA decode step per backend instead")
    args = ap.parse_args()
    ms.set_device("CPU")
    if args.runner:
        return runner_steps(args.repeats * 2 + 1)
    from mft.ops.paged_mla import paged_mla

    rng = np.random.default_rng(0)
    b, ctx, bs, h, r, dr = args.batch, args.context, args.block_size, args.heads, args.rank, args.rope_dim
    blocks = -(-ctx // bs)
    slots = (b * blocks + 1) * bs
    tables = (rng.permutation(b * blocks) + 1).reshape(b, blocks).astype(np.int32)
    f = lambda *shape: ms.Tensor(rng.standard_normal(shape).astype(np.float32))  # noqa: E731
    args_ = (f(b, h, 1, r) * 0.05, f(b, h, 1, dr) * 0.1, f(b, 1, r), f(b, 1, dr), f(slots, 1, r), f(slots, 1, dr),
             ms.Tensor(tables), ms.Tensor(np.full(b, ctx, np.int32)))

    def call(fused):
        return paged_mla(*args_, bs, 0, scale=192 ** -0.5, fused=fused).asnumpy()

    diff = np.abs(call(True) - call(False)).max()
    times, cpu = {}, {}
    for fused in (True, False):
        samples, cpu_samples = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            call(fused)
            samples.append(time.perf_counter() - start)
            cpu_samples.append(time.process_time() - start_cpu)
        times[fused] = statistics.median(samples) * 1e3
        cpu[fused] = statistics.median(cpu_samples) * 1e3
    # process CPU time counts every thread of the process: on a loaded machine it is steadier than wall time
    print(f"paged MLA decode attention, batch {b} x context {ctx} x heads {h}, rank {r} + rope {dr}, block {bs}: "
          f"fused {times[True]:.2f} ms ({cpu[True]:.2f} ms CPU), composed {times[False]:.2f} ms ({cpu[False]:.2f} ms "
          f"CPU), speed-up {times[False] / times[True]:.1f}x (max |diff| {diff:.1e})")


def runner_steps(repeats: int) -> None:
    ms.runtime.launch_blocking()  # as mft serve runs
    from mft.models import AutoModelForCausalLM
    from mft.serving.paged_runner import PagedRunner

    fixture = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "hf",
                           "deepseek_v3")
    model = AutoModelForCausalLM.from_pretrained(fixture)
    bs, blocks = 16, 16 * 16
    runners = {b: PagedRunner(model, blocks * bs + bs, bs, 16, 256, "graph", b) for b in ("fused", "composed")}
    rng = np.random.default_rng(0)
    for rows, ctxlen in ((1, 100), (4, 100), (16, 200)):
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
        med = {b: statistics.median(s) * 1e3 for b, s in samples.items()}
        print(f"MLA runner decode step, batch {rows}, context {ctxlen}: "
              + ", ".join(f"{b} {m:.2f} ms" for b, m in med.items())
              + f" (composed / fused {med['composed'] / med['fused']:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
