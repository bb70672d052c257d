"""What msrun runs on every process: `python -m mft.parallel.worker train CONFIG [--set k=v ...]`
or `python -m mft.parallel.worker run SCRIPT [args ...]`.

msrun runs the same command as its scheduler (MS_ROLE=MS_SCHED) and as
each worker (MS_ROLE=MS_WORKER). The scheduler only needs
`mindspore.communication.init()`; on a node other than node 0
(MFT_NODE_RANK set by `mft.parallel.launch`) it exits at once, because
node 0 already runs the one scheduler of the cluster. A worker that fails
writes its rank and error line to `<log_dir>/rank_<N>.error` (read by the
launcher), prints the traceback to its worker log and exits 1, which makes
msrun kill the other workers.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback

USAGE = "usage: python -m mft.parallel.worker train CONFIG [--set KEY=VALUE ...] | run SCRIPT [ARGS ...]"


def _rank() -> int:
    from mft.parallel.process_groups import joined

    groups = joined()
    if groups is not None:
        return groups.rank
    return int(os.environ.get("RANK_ID", "-1"))


def _error_line(exc: BaseException) -> str:
    """`Type: first line of the message` (MindSpore's messages go on with call stacks and rulers)."""
    lines = [l.strip() for l in str(exc).splitlines() if l.strip() and not l.strip().startswith("-")]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _train(args: list[str]) -> None:
    if not args:
        raise SystemExit(USAGE)
    overrides = []
    rest = args[1:]
    while rest:
        if rest[0] != "--set" or len(rest) < 2:
            raise SystemExit(USAGE)
        overrides.append(rest[1])
        rest = rest[2:]
    from mft.config import load_config
    from mft.training.trainer import train

    summary = train(load_config(args[0], overrides), echo=lambda *a, **k: None if _rank() > 0 else print(*a, **k))
    if _rank() <= 0:
        print(f"trained {summary['steps']} steps: loss {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}; "
              f"checkpoint {summary['checkpoint']}")  # fmt: skip


def _run_script(args: list[str]) -> None:
    if not args:
        raise SystemExit(USAGE)
    sys.argv = list(args)
    runpy.run_path(args[0], run_name="__main__")


def main(argv: list[str]) -> int:
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        if os.environ.get("MFT_NODE_RANK", "0") != "0":
            return 0  # node 0 runs the scheduler; this node's msrun started a second one
        from mindspore.communication import init

        init()  # serves the cluster until the workers finish
        return 0
    if not argv or argv[0] not in ("train", "run"):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        (_train if argv[0] == "train" else _run_script)(argv[1:])
    except SystemExit as e:
        if e.code in (None, 0):
            return 0
        _report(e)
        return e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - every failure is reported with its rank, then re-signalled by exit 1
        traceback.print_exc()
        _report(e)
        return 1
    return 0


def _report(exc: BaseException) -> None:
    from mft.parallel.launch import write_failure

    line = _error_line(exc) if not isinstance(exc, SystemExit) else f"exit {exc.code}"
    rank = _rank()
    print(f"mft worker rank {rank} failed: {line}", file=sys.stderr, flush=True)
    log_dir = os.environ.get("MFT_LOG_DIR")
    if log_dir:
        write_failure(log_dir, rank, line)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
