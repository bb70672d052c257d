"""`mft train CONFIG [--set key=value ...]`: pre-training / full fine-tuning."""

from __future__ import annotations

import argparse

from mft.errors import MftError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description="Train (pre-train, or fine-tune fully or with LoRA) a model described by a YAML recipe. "
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
    d = p.add_argument_group("distributed (workers are started by MindSpore's msrun; see docs/feature/parallel_training.md)")
    d.add_argument("--nproc", type=int, default=1, metavar="N", help="worker processes on this node (default 1: no msrun)")
    d.add_argument("--nnodes", type=int, default=1, metavar="N", help="nodes taking part; run the same command on each")
    d.add_argument("--node-rank", type=int, default=0, metavar="R", help="this node's rank, 0 .. nnodes-1 (node 0 hosts the scheduler)")
    d.add_argument("--master", default=None, metavar="HOST:PORT",
                   help="node 0's address and a free port (default with one node: 127.0.0.1 and a free port)")  # fmt: skip
    f = p.add_argument_group("fault tolerance (docs/feature/high_availability.md)")
    f.add_argument("--max-restarts", type=int, default=0, metavar="N",
                   help="restart a crashed run (non-zero exit, killed) up to N times from its newest checkpoint, "
                        "with exponential backoff (default 0: no supervisor)")
    f.add_argument("--restart-backoff", type=float, default=1.0, metavar="S",
                   help="seconds before the first restart; doubled for each further one (max 60)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mft.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.max_restarts < 0:
        raise MftError(f"--max-restarts must be >= 0, got {args.max_restarts}")
    if args.max_restarts:
        return supervise(args, cfg)
    if args.nproc != 1 or args.nnodes != 1:
        from mft.parallel.launch import launch_train

        return launch_train(cfg, args.config, args.overrides, args.nproc, args.nnodes, args.node_rank, args.master)
    from mft.training.trainer import train

    summary = train(cfg)
    losses = (f"loss {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}" if summary["last_loss"] is not None
              else "no step run")
    stopped = f" (stopped by {summary['stopped_by']})" if summary.get("stopped_by") else ""
    print(f"trained {summary['steps']} steps in {summary['elapsed_s']:.1f}s{stopped}: {losses}; checkpoint {summary['checkpoint']}")
    return summary.get("exit_code", 0)


def supervise(args: argparse.Namespace, cfg) -> int:
    """Runs this same command without --max-restarts as a child, restarting it after crashes."""
    import os
    import sys

    from mft.training.supervisor import Supervisor

    cmd = [sys.executable, "-m", "mft.cli.main", "train", os.path.abspath(args.config)]
    for o in args.overrides:
        cmd += ["--set", o]
    if args.nproc != 1 or args.nnodes != 1:
        cmd += ["--nproc", str(args.nproc), "--nnodes", str(args.nnodes), "--node-rank", str(args.node_rank)]
        if args.master:
            cmd += ["--master", args.master]
    if args.restart_backoff < 0:
        raise MftError(f"--restart-backoff must be >= 0, got {args.restart_backoff}")
    distributed = args.nproc != 1 or args.nnodes != 1
    return Supervisor(cmd, os.path.abspath(cfg.run.output_dir), args.max_restarts, backoff_s=args.restart_backoff,
                      restart_exit_2=distributed).run()
