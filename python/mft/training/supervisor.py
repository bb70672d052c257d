"""`mft train CONFIG --max-restarts N`: restart a crashed run from its newest checkpoint.

The supervisor runs the same `mft train` command (single process or
`--nproc` through msrun) as a child process and watches its exit:

- 0: done. 130 (SIGINT) or 2 (bad input, or a non-finite loss with
  train.nan_action=raise): not restarted - a restart would not change it.
  Under `--nproc` exit 2 is restarted too: the msrun launcher reports any
  failed worker (a killed one included) that way.
- anything else (a crash: non-zero exit, or killed by a signal such as
  SIGKILL from the OOM killer): restarted with `--set checkpoint.resume=auto`
  (the newest complete checkpoint under run.output_dir; none yet: a fresh
  start), after a backoff that doubles per restart (base, 2 x base, ... up to
  `max_backoff_s`), at most N times.

Each restart is logged with its reason (exit code or signal name) and the
checkpoint it resumes from, to stderr and to `logs/supervisor.log`.
SIGTERM / SIGINT sent to the supervisor are passed on to the child (which
saves an end-of-life checkpoint and exits 0 / 130) and end supervision.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

NO_RESTART = {0: "finished", 2: "bad input (exit 2)", 130: "interrupted (exit 130)"}


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with code {returncode}"


def _term_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM it when the supervisor dies, so it saves and stops."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl (not Linux): the child is not told when the supervisor dies
        return


class Supervisor:
    def __init__(self, child_cmd: list[str], output_dir: str, max_restarts: int, backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, echo=None, restart_exit_2: bool = False):
        self.child_cmd = list(child_cmd)
        # --nproc: the msrun launcher exits 2 for any failed worker (killed included), so 2 is a crash there
        self.no_restart = {k: v for k, v in NO_RESTART.items() if not (restart_exit_2 and k == 2)}
        self.output_dir = output_dir
        self.max_restarts = max_restarts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.restarts = 0
        self.child: subprocess.Popen | None = None
        self._stop_signal: int | None = None

    def log(self, msg: str) -> None:
        line = f"mft supervisor: {msg}"
        self.echo(line)
        logs = os.path.join(self.output_dir, "logs")
        os.makedirs(logs, exist_ok=True)
        with open(os.path.join(logs, "supervisor.log"), "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    def _forward(self, signum, frame) -> None:
        self._stop_signal = signum
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def _resume_point(self) -> str:
        from mft.training.checkpoint import latest_checkpoint

        try:
            folder = latest_checkpoint(os.path.join(self.output_dir, "checkpoints"), warn=self.log)
        except Exception as e:  # noqa: BLE001 - reported; the child reports it properly
            return f"no usable checkpoint ({e})"
        return f"from {folder}" if folder else "from scratch (no checkpoint yet)"

    def run(self) -> int:
        previous = {s: signal.signal(s, self._forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            cmd = self.child_cmd
            while True:
                # own session: a terminal Ctrl-C reaches it once, via _forward; SIGTERM if the supervisor dies
                self.child = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_term_with_parent)
                rc = self.child.wait()
                if self._stop_signal is not None:
                    self.log(f"{signal.Signals(self._stop_signal).name} received; the run {describe_exit(rc)}; not restarting")
                    return rc if rc >= 0 else 128 - rc
                if rc in self.no_restart:
                    if rc:
                        self.log(f"the run ended: {self.no_restart[rc]}; not restarting")
                    return rc
                if self.restarts >= self.max_restarts:
                    self.log(f"the run {describe_exit(rc)}; no restarts left (--max-restarts {self.max_restarts})")
                    return rc if rc > 0 else 128 - rc
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** self.restarts)
                self.restarts += 1
                self.log(f"the run {describe_exit(rc)}; restart {self.restarts}/{self.max_restarts} in {delay:g}s, "
                         f"resuming {self._resume_point()}")
                time.sleep(delay)
                if self._stop_signal is not None:
                    self.log(f"{signal.Signals(self._stop_signal).name} received during backoff; not restarting")
                    return 0 if self._stop_signal == signal.SIGTERM else 130
                cmd = self.child_cmd + ["--set", "checkpoint.resume=auto"]
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
