"""`mft report`: a self-contained HTML page (summary, plots, config) for a training run."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write an HTML report with plots for a training run",
        description=(
            "Read RUN_DIR/metrics.jsonl (and config.yaml, logs/rank_0.log when present) and write one "
            "self-contained HTML file: run summary, plots of loss / validation loss, lr, grad norm, "
            "throughput, memory, loss scale and MoE load (those the run logged), and the resolved config."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a training run folder (the run.output_dir of `mft train`)")
    p.add_argument("--output", metavar="FILE", default=None, help="where to write the page (default RUN_DIR/report.html)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mft.monitor.report import write_report

    path = write_report(args.run_dir, args.output)
    print(f"wrote {path}")
    return 0
