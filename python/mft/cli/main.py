"""`mft` entry point: one module per subcommand, imported lazily.

Each module `mft.cli.<name>_cmd` defines `add_parser(subparsers)`, which
registers its parser and sets `func` to a callable taking the parsed args.
Heavy imports (MindSpore) happen inside those callables so `mft --help`
stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mft.errors import MftError

# Order is the order `mft --help` lists them.
SUBCOMMANDS = ["train", "plan", "report", "generate", "chat", "distill", "serve", "eval", "compare", "quantize", "tokenizer", "data", "weights"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mft",
        description="mft: LLMs on MindSpore: tokenizer and data tools, pre-training, fine-tuning (full, LoRA), "
                    "evaluation, generation, serving and weight conversion. Tested on CPU; Ascend and GPU not yet run.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"mft.cli.{name}_cmd")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except MftError as e:
        if args.debug:
            raise
        print(f"mft {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mft {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
