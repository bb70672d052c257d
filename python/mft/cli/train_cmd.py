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
    d = p.add_argument_group("distributed (workers are started by MindSpore's msrun; see docs/distributed.md)")
    d.add_argument("--nproc", type=int, default=1, metavar="N", help="worker processes on this node (default 1: no msrun)")
    d.add_argument("--nnodes", type=int, default=1, metavar="N", help="nodes taking part; run the same command on each")
    d.add_argument("--node-rank", type=int, default=0, metavar="R", help="this node's rank, 0 .. nnodes-1 (node 0 hosts the scheduler)")
    d.add_argument("--master", default=None, metavar="HOST:PORT",
                   help="node 0's address and a free port (default with one node: 127.0.0.1 and a free port)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mft.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.nproc != 1 or args.nnodes != 1:
        from mft.parallel.launch import launch_train

        return launch_train(cfg, args.config, args.overrides, args.nproc, args.nnodes, args.node_rank, args.master)
    from mft.training.trainer import train

    summary = train(cfg)
    print(
        f"trained {summary['steps']} steps in {summary['elapsed_s']:.1f}s: "
        f"loss {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}; checkpoint {summary['checkpoint']}"
    )
    return 0
