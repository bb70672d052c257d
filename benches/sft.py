"""Supervised fine-tuning: packed vs one-conversation-per-row tokens/s, and LoRA vs full fine-tuning.

    .venv/bin/python benches/sft.py [--steps 20] [--batch 8] [--seq-len 128]

Data: the bundled instruction set (data/sft/kjv_quote.jsonl, 272
conversations) rendered with ChatML and tokenized with a 1024-token BPE
trained here; model: a Llama h128 x 2 layers (the tiny recipes' shape), fp32,
compiled step, one run on this machine.

1. Packed vs unpacked (in this process, the same model, optimizer and
   compiled step, steps interleaved so load hits both alike): rows from
   `finetune.packing` (whole conversations best-fit-decreasing into seq_len
   rows) against one conversation per row padded to seq_len. Printed: rows
   per epoch, padding, step time and real (non-padding) tokens/s.
2. LoRA (r 8 on all seven projections) vs full fine-tuning on a larger
   Llama (h512 x 4 layers, micro-batch 2, where weights and optimizer state
   outweigh the activations as they do at real sizes): `mft train` on the
   packed rows in its own process each, MindSpore's memory-pool peak
   (activations and transient gradients; parameters and optimizer state live
   outside the pool on CPU), peak RSS, the checkpoint's optimizer state, the
   median step time of the second half.
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
sys.path.insert(0, os.path.join(ROOT, "python"))
SFT = os.path.join(ROOT, "data", "sft", "kjv_quote.jsonl")
CORPUS = os.path.join(ROOT, "data", "kjv", "kjv.jsonl")
POOL_PEAK = re.compile(r"dynamic memory pool total allocated mem:\d+M,.*?peak used mem:(\d+)M")
MODEL = {"arch": "llama", "hidden_size": 128, "intermediate_size": 344, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
         "max_position_embeddings": 512}
# LoRA vs full: a model whose weights and optimizer state outweigh a small batch's activations (as at real sizes)
LORA_MODEL = {**MODEL, "hidden_size": 512, "intermediate_size": 1376, "num_layers": 4, "num_heads": 8, "num_kv_heads": 4}


def prepare(workdir: str) -> tuple[str, str]:
    from mft.data.sft import preprocess_sft
    from mft.tokenizer import Tokenizer

    texts = []
    with open(CORPUS, encoding="utf-8") as f:
        for _, line in zip(range(60), f):
            texts.append(json.loads(line)["text"])
    with open(SFT, encoding="utf-8") as f:
        texts += [line for line in f]
    tok = Tokenizer.train(texts, vocab_size=1024, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok_path = os.path.join(workdir, "tokenizer.json")
    tok.save(tok_path)
    prefix = os.path.join(workdir, "sft")
    preprocess_sft([SFT], Tokenizer.from_file(tok_path), prefix, chat_template="chatml")
    return tok_path, prefix


def write_recipe(workdir: str, name: str, tok: str, prefix: str, args, finetune: dict, model: dict = MODEL, batch: int = 0) -> str:
    recipe = {
        "run": {"name": name, "output_dir": os.path.join(workdir, name), "seed": 0},
        "tokenizer": {"path": tok},
        "data": {"prefix": prefix, "seq_len": args.seq_len},
        "model": model,
        "finetune": {"packing": True, **finetune},
        "train": {"steps": args.steps, "micro_batch_size": batch or args.batch, "optimizer": {"lr": 1e-3, "weight_decay": 0.0},
                  "lr_schedule": {"name": "constant"}},
        "checkpoint": {"every_steps": 0, "keep": 1},
        "monitor": {"log_every": 1, "progress_bar": False, "tensorboard": False},
    }
    path = os.path.join(workdir, f"{name}.yaml")  # JSON is YAML
    with open(path, "w") as f:
        json.dump(recipe, f)
    return path


def packed_vs_unpacked(recipe: str, args) -> dict:
    import mindspore as ms

    from mft.config import load_config
    from mft.data.indexed import IndexedDataset
    from mft.data.sft import open_loss_mask
    from mft.data.sft_packing import PackedSftSamples
    from mft.tokenizer import Tokenizer
    from mft.training.model_factory import build_model
    from mft.training.optim.factory import build_optimizer
    from mft.training.train_step import TrainStep

    ms.set_device("CPU")
    ms.set_seed(0)
    cfg = load_config(recipe)
    indexed = IndexedDataset(cfg.data.prefix)
    mask = open_loss_mask(cfg.data.prefix, indexed)
    packed = PackedSftSamples(indexed, args.seq_len, 0, mask=mask)
    single = PackedSftSamples(indexed, args.seq_len, 0, mask=mask)
    single.rows = [[d] for d in range(len(indexed))]  # one conversation per row, padded to seq_len
    single.samples_per_epoch = len(single.rows)
    model, _ = build_model(cfg, Tokenizer.from_file(cfg.tokenizer.path))
    step = TrainStep(model, build_optimizer(cfg.train.optimizer, model.trainable_params()), 1.0, 1)
    streams = {"one conversation per row": single, "packed": packed}
    times = {k: [] for k in streams}
    real = {k: 0 for k in streams}
    for name, s in streams.items():  # compile + warm up on each stream's shapes (the same shapes)
        b = s.rank_batch(0, 1, args.batch)
        step.step(b.inputs, b.labels, 1e-3)
    for i in range(args.steps):
        for name, s in streams.items():
            b = s.rank_batch((i + 1) * args.batch, 1, args.batch)
            t0 = time.perf_counter()
            step.step(b.inputs, b.labels, 1e-3)
            times[name].append(time.perf_counter() - t0)
            real[name] += b.real_tokens
    out = {}
    for name, s in streams.items():
        total = sum(times[name])
        out[name] = {"rows": s.samples_per_epoch, "padding": s.padding_fraction, "step_ms": 1000 * statistics.median(times[name]),
                     "real_tokens_per_s": real[name] / total}
    out["fused_attention"] = bool(getattr(model.config, "fused_attention", False))
    return out


def _tensor_bytes(path: str, skip=()) -> int:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__" and k not in skip)


def train_run(recipe: str) -> dict:
    with open(recipe) as f:
        out = json.load(f)["run"]["output_dir"]
    env = {**os.environ, "MS_DEV_RUNTIME_CONF": "memory_statistics:True"}
    proc = subprocess.run([sys.executable, "-m", "mft", "train", recipe], capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"mft train {recipe} failed:\n{proc.stderr[-3000:]}")
    peaks = [int(m) for m in POOL_PEAK.findall(proc.stdout + proc.stderr)]
    with open(os.path.join(out, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    ckpt = os.path.join(out, "checkpoints", open(os.path.join(out, "checkpoints", "latest")).read().strip())
    return {
        "pool_peak_mb": max(peaks) if peaks else float("nan"),
        "rss_mb": max(r.get("peak_memory_mb", 0) for r in records),
        "step_ms": 1000 * statistics.median(r["step_time_s"] for r in records[len(records) // 2:]),
        "optimizer_mb": _tensor_bytes(os.path.join(ckpt, "optimizer.safetensors"), skip=("optimizer_step",)) / 2**20,
        "first_loss": records[0]["loss"], "last_loss": records[-1]["loss"],
    }


def planned(recipe: str) -> dict:
    from mft.config import load_config
    from mft.plan import make_plan

    return make_plan(load_config(recipe))["memory"]["per_device"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--lora-batch", type=int, default=2, help="micro-batch of the LoRA vs full runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mft-bench-sft-") as workdir:
        tok, prefix = prepare(workdir)
        full = write_recipe(workdir, "full", tok, prefix, args, {"method": "full"}, LORA_MODEL, args.lora_batch)
        lora = write_recipe(workdir, "lora", tok, prefix, args, {"method": "lora", "lora": {"r": 8, "alpha": 16}}, LORA_MODEL, args.lora_batch)
        small = write_recipe(workdir, "small", tok, prefix, args, {"method": "full"})
        runs = {"full": train_run(full), "lora": train_run(lora)}
        plans = {"full": planned(full), "lora": planned(lora)}
        pk = packed_vs_unpacked(small, args)

    print(f"Llama h{MODEL['hidden_size']} x {MODEL['num_layers']} layers, fp32, batch {args.batch} x seq {args.seq_len}, "
          f"{args.steps} steps each, fused attention {'on' if pk.pop('fused_attention') else 'off'}")
    print(f"\n{'rows':<26} {'rows/epoch':>10} {'padding':>8} {'step ms':>8} {'real tokens/s':>14}")
    for name, r in pk.items():
        print(f"{name:<26} {r['rows']:>10} {100 * r['padding']:>7.1f}% {r['step_ms']:>8.1f} {r['real_tokens_per_s']:>14.0f}")
    a, b = pk["packed"], pk["one conversation per row"]
    print(f"packed / one per row: real tokens/s {a['real_tokens_per_s'] / b['real_tokens_per_s']:.2f}x, "
          f"step time {a['step_ms'] / b['step_ms']:.2f}x, rows per epoch {a['rows'] / b['rows']:.2f}x")
    print(f"\nLoRA r 8 (all seven projections) vs full: Llama h{LORA_MODEL['hidden_size']} x {LORA_MODEL['num_layers']} layers, "
          f"batch {args.lora_batch} x seq {args.seq_len}, packed rows, {args.steps} steps each")
    print(f"{'method':<8} {'step ms':>8} {'pool peak MB':>12} {'plan act MB':>11} {'optimizer MB':>12} {'plan total MB':>13} "
          f"{'peak RSS MB':>11} {'loss first->last':>17}")
    for name, r in runs.items():
        p = plans[name]
        print(f"{name:<8} {r['step_ms']:>8.1f} {r['pool_peak_mb']:>12} {p['activations'] / 2**20:>11.1f} {r['optimizer_mb']:>12.2f} "
              f"{p['total'] / 2**20:>13.1f} {r['rss_mb']:>11.0f} {r['first_loss']:>8.3f}->{r['last_loss']:.3f}")
    f, lo = runs["full"], runs["lora"]
    print(f"lora / full: step time {lo['step_ms'] / f['step_ms']:.2f}x, pool peak {lo['pool_peak_mb'] / f['pool_peak_mb']:.2f}x, "
          f"optimizer state {lo['optimizer_mb'] / f['optimizer_mb']:.3f}x, peak RSS {lo['rss_mb'] / f['rss_mb']:.2f}x, "
          f"planned total {plans['lora']['total'] / plans['full']['total']:.2f}x")


if __name__ == "__main__":
    main()
