"""`mft plan CONFIG [--set key=value ...] [--json]`: parameters, FLOPs, per-device memory, without building the model."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="parameters, FLOPs per token and per-device memory of a recipe (nothing is built)",
        description="Print a recipe's parameter counts (total, active, by component), training FLOPs per token "
        "and the estimated memory per device (weights, gradients, optimizer state, activations) under its "
        "precision, optimizer, recompute and parallel layout. Pure arithmetic: no model is built. See docs/feature/memory_optimization.md.",
    )
    p.add_argument("config", help="YAML recipe (may start with `base: other.yaml`)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set parallel.tp=8 (repeatable; values are YAML-typed)",
    )
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mft.config import load_config
    from mft.plan import make_plan
    from mft.plan.render import render

    plan = make_plan(load_config(args.config, args.overrides))
    print(json.dumps(plan, indent=2) if args.json else render(plan, args.config))
    return 0
