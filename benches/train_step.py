"""Train-step speed: `mft train` against MindFormers' own trainer, side by side.

One run, alternating processes on the same shape (hidden 128, 2 layers,
4 heads MHA, intermediate 512, vocab 1000, seq 128, fp32, AdamW):
  - the peer: MindFormers 2.0.0 legacy Llama + `nn.TrainOneStepCell`
    (no clipping), from ../shared/peers/mindformers (`--mindformers PYTHON`,
    the venv its install.sh prints);
  - `mft train` on the bundled corpus, step_time_s from metrics.jsonl, once
    without clipping (the peer's work) and once with global-norm clipping.
Each process reports the median step time of its last 10 steps; printed are
each side's median over `--runs` processes, the run-to-run spread
(slowest / fastest median) and the throughput ratio mft / peer.

Then model-FLOPs utilisation (MFU) against numpy's sgemm, measured in the
same run: the demo model and a ~110M-parameter Llama at seq 512.

`--only moe`: the same step-time table for a Qwen3-MoE-shaped model (many
small experts, top-k routing; MOE_SHAPE), `mft train` with the sorted
dropless dispatch (model.fused_moe: permute + grouped-matmul kernels, T*k
expert rows) against the static-capacity dispatch, dropless (every expert on
all T tokens) and at capacity factor 1.25 (tokens dropped), alternating
processes. (The MindFormers peer script is a dense Llama only.)

    python benches/train_step.py --mindformers ~/.cache/mindformers-peer/bin/python [--runs 3] [--batches 1,8]
    python benches/train_step.py --only mfu
    python benches/train_step.py --only moe [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_SCRIPT = os.path.join(ROOT, "..", "shared", "peers", "mindformers", "train_legacy_llama.py")
CORPUS = os.path.join(ROOT, "data", "kjv", "kjv.jsonl")

# The shape (a): the peer script builds the same from its defaults.
SHAPE_A = dict(hidden_size=128, intermediate_size=512, num_layers=2, num_heads=4, num_kv_heads=4, vocab_size=1000, seq=128)
DEMO = dict(hidden_size=256, intermediate_size=688, num_layers=4, num_heads=4, num_kv_heads=2, vocab_size=4096, seq=128,
            tie=True, batch=16)
# Qwen3-30B-A3B's routing shape (128 experts, top 8, expert width 768 of hidden 2048), scaled down 8x in width and 4x in experts.
MOE_SHAPE = dict(hidden_size=256, intermediate_size=688, moe_intermediate_size=96, num_experts=32, top_k=4, num_layers=2,
                 num_heads=4, num_kv_heads=2, vocab_size=4096, seq=128, tie=True, batch=8)
LLAMA_110M = dict(hidden_size=768, intermediate_size=2048, num_layers=12, num_heads=12, num_kv_heads=12, vocab_size=32000,
                  seq=512, tie=True, batch=1)


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def flops_per_token(shape: dict) -> float:
    """6 x matmul parameters (fwd+bwd) + causal attention scores/values (fwd+bwd)."""
    h, i, layers, v, seq = (shape[k] for k in ("hidden_size", "intermediate_size", "num_layers", "vocab_size", "seq"))
    hd = h // shape["num_heads"]
    kv = shape["num_kv_heads"] * hd
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i  # q, o, k, v, gate/up/down
    matmul_params = layers * per_layer + v * h  # + lm_head
    attention = layers * 2 * 2 * seq * h / 2  # QK^T and AV, causal half
    return 6 * matmul_params + 3 * attention


def prepare_data(workdir: str, vocab: int) -> tuple[str, str]:
    """A byte-level tokenizer of `vocab` ids and the bundled corpus preprocessed with it."""
    tok = os.path.join(workdir, f"tok{vocab}.json")
    prefix = os.path.join(workdir, f"kjv{vocab}")
    if not os.path.exists(tok):
        mft = [sys.executable, "-m", "mft"]
        subprocess.run(mft + ["tokenizer", "train", "--input", CORPUS, "--vocab-size", str(vocab), "--output", tok], check=True,
                       capture_output=True)
        subprocess.run(mft + ["data", "preprocess", "--input", CORPUS, "--tokenizer", tok, "--output-prefix", prefix], check=True,
                       capture_output=True)
    return tok, prefix


def write_recipe(workdir: str, name: str, shape: dict, batch: int, steps: int, clip: float, tok: str, prefix: str) -> str:
    out = os.path.join(workdir, name)
    recipe = {
        "run": {"name": name, "output_dir": out, "seed": 0},
        "tokenizer": {"path": tok},
        "data": {"prefix": prefix, "seq_len": shape["seq"]},
        "model": {"arch": "llama", "vocab_size": shape["vocab_size"], "hidden_size": shape["hidden_size"],
                  "intermediate_size": shape["intermediate_size"], "num_layers": shape["num_layers"],
                  "num_heads": shape["num_heads"], "num_kv_heads": shape["num_kv_heads"],
                  "max_position_embeddings": max(512, shape["seq"]), "tie_word_embeddings": bool(shape.get("tie", False))},
        "train": {"steps": steps, "micro_batch_size": batch, "clip_grad_norm": clip,
                  "optimizer": {"lr": 1e-3, "weight_decay": 0.01}, "lr_schedule": {"name": "constant"}},
        "checkpoint": {"every_steps": 0, "keep": 1},
        "monitor": {"log_every": 1, "progress_bar": False, "tensorboard": False},
    }
    path = os.path.join(workdir, f"{name}.yaml")  # JSON is YAML
    with open(path, "w") as f:
        json.dump(recipe, f)
    return path


def write_moe_recipe(workdir: str, name: str, shape: dict, steps: int, tok: str, prefix: str, model_extra: dict) -> str:
    """A qwen3_moe recipe of `shape`, with extra model keys (fused_moe, capacity_factor)."""
    path = write_recipe(workdir, name, shape, shape["batch"], steps, 1.0, tok, prefix)
    with open(path) as f:
        recipe = json.load(f)
    recipe["model"].update(arch="qwen3_moe", head_dim=shape["hidden_size"] // shape["num_heads"],
                           num_experts=shape["num_experts"], num_experts_per_tok=shape["top_k"],
                           moe_intermediate_size=shape["moe_intermediate_size"], **model_extra)
    with open(path, "w") as f:
        json.dump(recipe, f)
    return path


def run_mft(recipe: str, tail: int = 10) -> list[float]:
    """Per-step times (s) of one `mft train` process; the run folder is removed first."""
    with open(recipe) as f:
        out = json.load(f)["run"]["output_dir"]
    subprocess.run(["rm", "-rf", out], check=True)
    subprocess.run([sys.executable, "-m", "mft", "train", recipe], check=True, capture_output=True)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        times = [json.loads(line)["step_time_s"] for line in f if line.strip()]
    return times[-tail:]


def run_peer(python: str, batch: int, steps: int) -> list[float]:
    proc = subprocess.run([python, PEER_SCRIPT, "--mode", "graph", "--steps", str(steps), "--bs", str(batch)],
                          check=True, capture_output=True, text=True)
    times = [float(m.group(1)) / 1000 for m in re.finditer(r"^step\s+\d+ loss \S+ time ([\d.]+) ms", proc.stdout, re.M)]
    if not times:
        raise RuntimeError(f"peer printed no step times:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return times[-10:]


def side_by_side(args, workdir: str) -> None:
    tok, prefix = prepare_data(workdir, SHAPE_A["vocab_size"])
    for batch in args.batches:
        sides = {}
        if args.mindformers:
            sides["MindFormers"] = lambda b=batch: run_peer(args.mindformers, b, args.steps)
        sides["mft (no clip)"] = lambda r=write_recipe(workdir, f"a_b{batch}_noclip", SHAPE_A, batch, args.steps, 0.0, tok, prefix): run_mft(r)
        sides["mft (clip 1.0)"] = lambda r=write_recipe(workdir, f"a_b{batch}_clip", SHAPE_A, batch, args.steps, 1.0, tok, prefix): run_mft(r)
        medians = {name: [] for name in sides}
        for _ in range(args.runs):  # alternate, so a noisy neighbour hurts every side alike
            for name, run in sides.items():
                medians[name].append(statistics.median(run()))
        print(f"\nshape a, batch {batch}, seq {SHAPE_A['seq']}: median step time of the last 10 steps, per process")
        print(f"{'side':<15} {'runs (ms)':<30} {'median':>8} {'tok/s':>8} {'spread':>7} {'vs peer':>8}")
        peer = statistics.median(medians["MindFormers"]) if "MindFormers" in medians else None
        for name, values in medians.items():
            med = statistics.median(values)
            runs = " ".join(f"{v * 1000:.1f}" for v in values)
            ratio = f"{peer / med:.2f}x" if peer else "-"
            print(f"{name:<15} {runs:<30} {med * 1000:>7.1f} {batch * SHAPE_A['seq'] / med:>8.0f} "
                  f"{max(values) / min(values):>6.2f}x {ratio:>8}")


def moe(args, workdir: str) -> None:
    shape = MOE_SHAPE
    tok, prefix = prepare_data(workdir, shape["vocab_size"])
    variants = {
        "sorted (fused_moe)": dict(fused_moe=True, capacity_factor=0.0),
        "capacity, dropless": dict(fused_moe=False, capacity_factor=0.0),
        "capacity 1.25": dict(fused_moe=False, capacity_factor=1.25),
    }
    recipes = {name: write_moe_recipe(workdir, f"moe_{i}", shape, args.steps, tok, prefix, extra)
               for i, (name, extra) in enumerate(variants.items())}
    medians = {name: [] for name in variants}
    for _ in range(args.runs):
        for name, recipe in recipes.items():
            medians[name].append(statistics.median(run_mft(recipe)))
    tokens = shape["batch"] * shape["seq"]
    print(f"\nMoE ({shape['num_experts']} experts, top {shape['top_k']}, hidden {shape['hidden_size']}, expert width "
          f"{shape['moe_intermediate_size']}, {shape['num_layers']} layers), batch {shape['batch']}, seq {shape['seq']}")
    print(f"{'dispatch':<20} {'runs (ms)':<24} {'median':>8} {'tok/s':>8} {'spread':>7} {'vs dropless capacity':>21}")
    base = statistics.median(medians["capacity, dropless"])
    for name, values in medians.items():
        med = statistics.median(values)
        print(f"{name:<20} {' '.join(f'{v * 1000:.1f}' for v in values):<24} {med * 1000:>7.1f} {tokens / med:>8.0f} "
              f"{max(values) / min(values):>6.2f}x {base / med:>20.2f}x")


def mfu(args, workdir: str) -> None:
    peak = sgemm_gflops()
    print(f"\nnumpy sgemm ceiling (2048^3 fp32, best of 5, this run): {peak:.1f} GFLOP/s")
    print(f"{'model':<12} {'params':>8} {'batch':>5} {'seq':>5} {'step ms':>8} {'tok/s':>8} {'GFLOP/s':>8} {'MFU':>6}")
    for name, shape, steps in (("demo", DEMO, 20), ("llama-110m", LLAMA_110M, 8)):
        tok, prefix = prepare_data(workdir, 4096)
        recipe = write_recipe(workdir, f"mfu_{name}", shape, shape["batch"], steps, 1.0, tok, prefix)
        step = statistics.median(run_mft(recipe, tail=max(3, steps // 2)))
        tps = shape["batch"] * shape["seq"] / step
        gflops = tps * flops_per_token(shape) / 1e9
        h, i, L, v = shape["hidden_size"], shape["intermediate_size"], shape["num_layers"], shape["vocab_size"]
        params = L * (4 * h * h + 3 * h * i) + v * h
        print(f"{name:<12} {params / 1e6:>7.0f}M {shape['batch']:>5} {shape['seq']:>5} {step * 1000:>8.1f} {tps:>8.0f} "
              f"{gflops:>8.1f} {gflops / peak:>6.1%}")
    after = sgemm_gflops()
    print(f"numpy sgemm ceiling measured again after the runs: {after:.1f} GFLOP/s"
          + ("  (differs by >10%: the machine's load changed; MFU figures are unreliable)" if abs(after - peak) > 0.1 * peak else ""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mindformers", help="python of the peer venv (../shared/peers/mindformers/install.sh prints it)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    ap.add_argument("--only", choices=("side-by-side", "mfu", "moe"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mft-bench-") as workdir:
        if args.only in (None, "side-by-side"):
            side_by_side(args, workdir)
        if args.only in (None, "mfu"):
            mfu(args, workdir)
        if args.only in (None, "moe"):
            moe(args, workdir)


if __name__ == "__main__":
    main()
