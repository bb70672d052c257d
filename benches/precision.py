"""fp16 against fp32 on the demo recipe: the loss curves of the same run (same data, seed and steps) side by side.

configs/tiny/demo.yaml (h256, 4 layers, batch 16 x seq 128, cosine schedule with 40 warmup steps) runs
`--steps` steps at `train.precision=fp32` and at `fp16` (fp32 master weights, dynamic loss scale), each in
its own `mft train` process, on a BPE of the demo's 4096 ids trained on the bundled KJV corpus. Printed:
the losses every 10 steps, the largest relative difference of the per-step losses (all steps, and the
last 10 steps' mean), the fp16 run's final loss scale and skipped steps, and the median step time.

    python benches/precision.py [--steps 100]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import prepare_data  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "tiny", "demo.yaml")


def run(workdir: str, precision: str, steps: int, tok: str, prefix: str) -> list[dict]:
    out = os.path.join(workdir, precision)
    sets = [f"run.output_dir={out}", f"tokenizer.path={tok}", f"data.prefix={prefix}", f"train.steps={steps}",
            f"train.precision={precision}", "monitor.log_every=1", "monitor.progress_bar=false", "monitor.tensorboard=false",
            "checkpoint.every_steps=0", "checkpoint.keep=1"]
    subprocess.run([sys.executable, "-m", "mft", "train", DEMO] + [a for s in sets for a in ("--set", s)], check=True,
                   capture_output=True, text=True)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mft-bench-precision-") as workdir:
        tok, prefix = prepare_data(workdir, 4096)
        runs = {p: run(workdir, p, args.steps, tok, prefix) for p in ("fp32", "fp16")}
    a = [m["loss"] for m in runs["fp32"]]
    b = [m["loss"] for m in runs["fp16"]]
    rel = [abs(x - y) / abs(x) for x, y in zip(a, b)]
    tail_a, tail_b = statistics.mean(a[-10:]), statistics.mean(b[-10:])
    print(f"configs/tiny/demo.yaml, {args.steps} steps, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'step':>5} {'fp32 loss':>10} {'fp16 loss':>10} {'rel diff':>9}")
    for i in range(9, len(a), 10):
        print(f"{i + 1:>5} {a[i]:>10.4f} {b[i]:>10.4f} {rel[i]:>9.2e}")
    worst = max(range(len(rel)), key=rel.__getitem__)
    print(f"largest per-step relative difference {rel[worst]:.2e} (step {worst + 1}); "
          f"last-10 mean loss fp32 {tail_a:.4f} fp16 {tail_b:.4f} ({abs(tail_a - tail_b) / tail_a:.2e})")
    fp16 = runs["fp16"]
    print(f"fp16: final loss_scale {fp16[-1].get('loss_scale')}, skipped steps {sum(bool(m.get('skipped')) for m in fp16)}")
    for p, recs in runs.items():
        print(f"{p}: median step {statistics.median(m['step_time_s'] for m in recs[len(recs) // 2:]) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
