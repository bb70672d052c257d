"""Memory and speed of the recompute choices (none, first N layers, selective, full), one run each on the same model and batch.

For each choice, `mft train` runs in its own process; printed are MindSpore's
memory-pool peak (the step's activations and transient gradients: weights
and optimizer state live outside the pool on CPU), the process's peak RSS,
the median step time of the last steps, the `mft plan` estimate of the
activations, and whether the losses are bit-identical to the run that keeps
every activation. The no-recompute baselines run twice ("again" rows): when
the two differ, the numbers depend on the machine's load, not on recompute.

    python benches/memory.py [--steps 12] [--batch 16] [--set KEY=VALUE ...] [--only NAME ...]

`--set` goes to every run (e.g. `--set run.deterministic=false`); `--only`
runs only the named choices (their baselines always run).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import DEMO, prepare_data, write_recipe  # noqa: E402

POOL_PEAK = re.compile(r"dynamic memory pool total allocated mem:\d+M,.*?peak used mem:(\d+)M")
CHOICES = {
    "none": [],
    "none, again": [],
    "first 2 layers": ["train.recompute=full", "train.recompute_layers=2"],
    "selective": ["train.recompute=selective"],
    "full": ["train.recompute=full"],
    # the composed attention keeps its scores and probabilities (heads x seq per token): what selective drops
    "none, composed attention": ["model.fused_attention=false"],
    "none, composed, again": ["model.fused_attention=false"],
    "selective, composed": ["model.fused_attention=false", "train.recompute=selective"],
}


def run(recipe: str, overrides: list[str]) -> dict:
    with open(recipe) as f:
        out = json.load(f)["run"]["output_dir"]
    subprocess.run(["rm", "-rf", out], check=True)
    args = [sys.executable, "-m", "mft", "train", recipe] + [a for o in overrides for a in ("--set", o)]
    env = {**os.environ, "MS_DEV_RUNTIME_CONF": "memory_statistics:True"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    peaks = [int(m) for m in POOL_PEAK.findall(proc.stdout + proc.stderr)]
    with open(os.path.join(out, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return {
        "pool_peak_mb": max(peaks) if peaks else float("nan"),
        "rss_mb": max(r.get("peak_memory_mb", 0) for r in records),
        "step_s": statistics.median(r["step_time_s"] for r in records[len(records) // 2:]),
        "losses": [(r["loss"], r["grad_norm"]) for r in records],
    }


def _first_difference(losses: list, base: list) -> str:
    step = next((i + 1 for i, (a, b) in enumerate(zip(losses, base)) if a != b), min(len(losses), len(base)) + 1)
    return f"DIFFER at step {step}"


def planned_activations_mb(recipe: str, overrides: list[str]) -> float:
    from mft.config import load_config
    from mft.plan import make_plan

    plan = make_plan(load_config(recipe, overrides))
    return plan["memory"]["per_device"]["activations"] / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    ap.add_argument("--only", action="append", default=[], choices=list(CHOICES), help="run only these choices")
    args = ap.parse_args()
    chosen = {n: o for n, o in CHOICES.items() if not args.only or n in args.only or n.startswith("none")}
    with tempfile.TemporaryDirectory(prefix="mft-bench-mem-") as workdir:
        tok, prefix = prepare_data(workdir, DEMO["vocab_size"])
        recipe = write_recipe(workdir, "mem", DEMO, args.batch, args.steps, 1.0, tok, prefix)
        results = {name: run(recipe, overrides + args.set) for name, overrides in chosen.items()}
        print(f"demo shape (h{DEMO['hidden_size']}, {DEMO['num_layers']} layers), batch {args.batch} x seq {DEMO['seq']}, "
              f"{args.steps} steps, overrides {args.set or 'none'}, load average {os.getloadavg()[0]:.1f} at the end")
        print(f"{'recompute':<26} {'pool peak MB':>12} {'plan MB':>8} {'peak RSS MB':>11} {'step ms':>8} {'losses':>20}")
        for name, r in results.items():
            base_name = "none, composed attention" if "composed" in name else "none"
            base = results[base_name]["losses"]
            same = "—" if name == base_name else "bit-identical" if r["losses"] == base else _first_difference(r["losses"], base)
            print(f"{name:<26} {r['pool_peak_mb']:>12} {planned_activations_mb(recipe, CHOICES[name] + args.set):>8.1f} {r['rss_mb']:>11.0f} "
                  f"{r['step_s'] * 1000:>8.1f} {same:>20}")


if __name__ == "__main__":
    main()
