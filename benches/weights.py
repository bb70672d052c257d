"""Weights I/O benchmark: mft (Rust core) vs the `safetensors` library + numpy,
with a plain copy of the same bytes as the ceiling; all in one run, same disk.

Checkpoint: synthetic, shaped like a 1B-parameter Llama (hidden 2048, MLP
8192, GQA 32/8 heads, vocab 128256, tied embeddings, 12 layers), float16,
~2 GB, written under /tmp (never the repo). Page cache is warm for every
contender (each job runs once untimed first). Every write job includes fsync
of its outputs, so all contenders do the same durable work (mft always
fsyncs before renaming into place).

    .venv/bin/python benches/weights.py [--layers 12] [--repeat 2] [--dir /tmp/mft-bench-weights] [--only save]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file as st_load
from safetensors.numpy import save_file as st_save

from mft.weights.plans import Placer
from mft.weights.reshard import reshard
from mft.weights.safetensors import load_file, save_file


def llama_1b(layers: int) -> dict[str, np.ndarray]:
    h, f, kv, vocab = 2048, 8192, 512, 128256
    rng = np.random.default_rng(0)
    block = rng.standard_normal(1 << 20).astype(np.float16)  # tiled, so building 2 GB is fast

    def t(*shape):
        n = int(np.prod(shape))
        return np.resize(block, n).reshape(shape)

    out = {"model.embed_tokens.weight": t(vocab, h), "model.norm.weight": t(h)}
    for i in range(layers):
        p = f"model.layers.{i}."
        out.update({
            p + "self_attn.q_proj.weight": t(h, h), p + "self_attn.k_proj.weight": t(kv, h),
            p + "self_attn.v_proj.weight": t(kv, h), p + "self_attn.o_proj.weight": t(h, h),
            p + "mlp.gate_proj.weight": t(f, h), p + "mlp.up_proj.weight": t(f, h), p + "mlp.down_proj.weight": t(h, f),
            p + "input_layernorm.weight": t(h), p + "post_attention_layernorm.weight": t(h),
        })
    return out


def fsync_tree(path: str) -> None:
    files = [path] if os.path.isfile(path) else [os.path.join(path, f) for f in os.listdir(path)]
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


def best(fn, repeat: int, cleanup=None) -> float:
    times = []
    for i in range(repeat + 1):  # first run warms the cache, untimed
        if cleanup:
            cleanup()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        if i:
            times.append(dt)
    if cleanup:
        cleanup()
    return min(times)


def numpy_tp_split(src: str, dst: str, tp: int) -> None:
    """The peer script: safetensors safe_open + numpy slicing + save_file per rank."""
    os.makedirs(dst, exist_ok=True)
    rules = [(re.compile(r"(embed_tokens|q_proj|k_proj|v_proj|gate_proj|up_proj)\.weight$"), 0),
             (re.compile(r"(o_proj|down_proj)\.weight$"), 1)]
    ranks: list[dict] = [{} for _ in range(tp)]
    with safe_open(src, framework="np") as f:
        for name in f.keys():
            arr = f.get_tensor(name)
            axis = next((a for r, a in rules if r.search(name)), None)
            for r in range(tp):
                ranks[r][name] = np.ascontiguousarray(np.split(arr, tp, axis=axis)[r]) if axis is not None else arr
    for r in range(tp):
        st_save(ranks[r], os.path.join(dst, f"rank{r}.safetensors"))
    fsync_tree(dst)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/mft-bench-weights")
    ap.add_argument("--only", choices=["load", "save", "reshard"], help="run just this job")
    args = ap.parse_args()
    d = args.dir
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    try:
        tensors = llama_1b(args.layers)
        nbytes = sum(v.nbytes for v in tensors.values())
        params = sum(v.size for v in tensors.values())
        src = os.path.join(d, "model.safetensors")
        save_file(tensors, src)
        print(f"checkpoint: {len(tensors)} tensors, {params / 1e9:.2f} B params, {nbytes / 1e9:.2f} GB F16 in {d}")
        gb = nbytes / 1e9
        out = os.path.join(d, "out.safetensors")
        outdir = os.path.join(d, "outdir")

        def rm():
            for p in (out, outdir):
                if os.path.isdir(p):
                    shutil.rmtree(p)
                elif os.path.exists(p):
                    os.remove(p)

        contiguous = np.empty(nbytes, np.uint8)

        def read_ceiling():
            with open(src, "rb", buffering=0) as f:
                f.readinto(contiguous)

        def write_ceiling():
            with open(out, "wb") as f:
                f.write(contiguous)
                f.flush()
                os.fsync(f.fileno())

        def peer_save():
            st_save(tensors, out)
            fsync_tree(out)

        def cp():
            subprocess.run(["cp", src, out], check=True)
            fsync_tree(out)

        rows = []
        r = args.repeat
        want = lambda job: args.only in (None, job)  # noqa: E731
        if want("load"):
            rows.append(("load", best(lambda: load_file(src), r), best(lambda: st_load(src), r), best(read_ceiling, r), "read into memory"))
        if want("save"):
            rows.append(("save", best(lambda: save_file(tensors, out), r, rm), best(peer_save, r, rm), best(write_ceiling, r, rm), "one write + fsync"))
        if want("reshard"):
            Placer({k: ("F16", list(v.shape)) for k, v in tensors.items()}, tp=4)  # same plan the mft reshard uses
            rows.append(("reshard tp=4", best(lambda: reshard(src, outdir, tp=4), r, rm),
                         best(lambda: numpy_tp_split(src, outdir, 4), r, rm), best(cp, r, rm), "cp + fsync"))
        del tensors
        print(f"\n{'job':<14}{'mft s':>8}{'GB/s':>7}{'peer s':>9}{'GB/s':>7}{'ceiling s':>11}{'GB/s':>7}{'mft/peer':>10}{'mft/ceil':>10}  ceiling")
        for job, m, p, c, what in rows:
            print(f"{job:<14}{m:>8.2f}{gb / m:>7.2f}{p:>9.2f}{gb / p:>7.2f}{c:>11.2f}{gb / c:>7.2f}{p / m:>9.2f}x{c / m:>9.0%}  {what}")
        print("\nmft/peer = peer time / mft time (>1: mft faster); mft/ceil = ceiling time / mft time.")
        print("peer: safetensors.numpy load_file/save_file; reshard peer: safe_open + np.split + save_file per rank.")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
