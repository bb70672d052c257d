"""Regenerates docs/example_report.html and docs/example_report.png (run by hand, ~1-2 min on CPU).

    .venv/bin/python tools/make_example_report.py

Trains a tiny Mixtral-style MoE (so the MoE panels show) for 80 steps on the first
60 chapters of the bundled KJV corpus with a 512-token BPE, in fp16 (so the loss-scale
panel shows) with 5% of the documents held out for a validation loss every 10 steps,
then runs `mft report` on the run folder and screenshots the page in headless Chromium.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "python"))

from headless_chromium import screenshot  # noqa: E402

from mft.data.preprocess import preprocess  # noqa: E402
from mft.tokenizer import Tokenizer  # noqa: E402

CORPUS = os.path.join(REPO, "data", "kjv", "kjv.jsonl")
DOCS = os.path.join(REPO, "docs")


def main() -> None:
    root = tempfile.mkdtemp(prefix="mft-example-report-")
    src = os.path.join(root, "slice.jsonl")
    with open(CORPUS, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as out:
        for _, line in zip(range(60), f):
            out.write(line)
    tok = Tokenizer.train([src], vocab_size=512)
    tok.save(os.path.join(root, "tokenizer.json"))
    preprocess([src], tok, os.path.join(root, "data"))
    run_dir = os.path.join(root, "run")
    recipe = {
        "run": {"name": "example: tiny MoE on KJV (80 steps, fp16, CPU)", "output_dir": run_dir, "seed": 7},
        "tokenizer": {"path": os.path.join(root, "tokenizer.json")},
        "data": {"prefix": os.path.join(root, "data"), "seq_len": 64, "split": "95,5,0"},
        "model": {
            "arch": "mixtral", "hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 4,
            "num_kv_heads": 2, "max_position_embeddings": 128, "num_experts": 4, "num_experts_per_tok": 2,
            "aux_loss_coef": 0.01,
        },
        "train": {
            "steps": 80, "micro_batch_size": 4,
            "optimizer": {"lr": 3.0e-3, "weight_decay": 0.1},
            "lr_schedule": {"name": "cosine", "warmup_steps": 8, "min_lr": 3.0e-4},
            "clip_grad_norm": 1.0, "precision": "fp16",
        },
        "checkpoint": {"every_steps": 0, "keep": 1},
        "monitor": {"progress_bar": False, "histograms_every": 20, "eval_every": 10},
    }  # fmt: skip
    recipe_path = os.path.join(root, "recipe.yaml")
    with open(recipe_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(recipe, f, sort_keys=False)
    mft = [sys.executable, "-m", "mft.cli.main"]
    subprocess.run([*mft, "train", recipe_path], check=True)
    html_path = os.path.join(DOCS, "example_report.html")
    subprocess.run([*mft, "report", run_dir, "--output", html_path], check=True)
    screenshot(html_path, os.path.join(DOCS, "example_report.png"))
    print(f"wrote {html_path} and example_report.png; run folder {run_dir}")


if __name__ == "__main__":
    main()
