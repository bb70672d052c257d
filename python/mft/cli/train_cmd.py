"""`mft train CONFIG [--set key=value ...]`: pre-training / full fine-tuning."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description="Train (pre-train or fully fine-tune) a model described by a YAML recipe. "
        "Writes metrics.jsonl, logs/, tensorboard/, config.yaml and checkpoints/ under run.output_dir.",
    )
    p.add_argument("config", help="YAML recipe (may start with `base: other.yaml`)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.steps=100 (repeatable; values are YAML-typed)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mft.config import load_config

    cfg = load_config(args.config, args.overrides)
    from mft.training.trainer import train

    summary = train(cfg)
    print(
        f"trained {summary['steps']} steps in {summary['elapsed_s']:.1f}s: "
        f"loss {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}; checkpoint {summary['checkpoint']}"
    )
    return 0
