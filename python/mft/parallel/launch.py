"""Start workers through MindSpore's msrun and watch them.

mft does not spawn workers itself: `launch` runs
`python -m mindspore.parallel.cluster.run` (the module behind `msrun`) with
`--join=True`, which starts the scheduler (on the master node) and this
node's workers, each in its own session, writes `worker_<rank>.log` and
`scheduler.log` into `--log_dir`, and SIGKILLs every other local worker as
soon as one exits non-zero. On top of that this module:

- puts the interpreter running mft first on PATH (msrun runs `python ...`);
- exports `MFT_NODE_RANK` so the worker entry (`mft.parallel.worker`) can
  tell whether its node hosts the scheduler: a second "node" on the same
  host also sees the master address as its own, and its msrun starts a
  scheduler process that must exit at once instead of binding the port
  node 0's scheduler already holds;
- bounds the whole run with a timeout and, on timeout or Ctrl-C, kills the
  msrun process and every process below it (workers included, which msrun
  puts in sessions of their own);
- after a failure, names the rank that failed first and its error line,
  from the `rank_<N>.error` files the worker entry writes.
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from mft.errors import MftError


FAILURE_GRACE_S = 5.0  # after a worker reports failure, how long msrun gets to stop the rest itself


@dataclass
class LaunchSpec:
    nproc: int  # workers on this node
    log_dir: str
    nnodes: int = 1
    node_rank: int = 0
    master: str | None = None  # HOST:PORT of the scheduler; default 127.0.0.1 and a free port
    cluster_timeout_s: int = 300  # how long workers wait for each other to join
    extra_env: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.nproc < 1:
            raise MftError(f"--nproc must be >= 1, got {self.nproc}")
        if self.nnodes < 1:
            raise MftError(f"--nnodes must be >= 1, got {self.nnodes}")
        if not 0 <= self.node_rank < self.nnodes:
            raise MftError(f"--node-rank {self.node_rank} is outside 0..{self.nnodes - 1} (--nnodes {self.nnodes})")
        if self.nnodes > 1 and not self.master:
            raise MftError("--nnodes > 1 needs --master HOST:PORT (the node-rank-0 host), the same on every node")

    @property
    def world_size(self) -> int:
        return self.nproc * self.nnodes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_master(master: str) -> tuple[str, int]:
    host, sep, port = master.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1024 <= int(port) <= 65535:
        raise MftError(f"--master {master!r}: expected HOST:PORT with a port in 1024..65535")
    return host, int(port)


def msrun_command(spec: LaunchSpec, worker_args: list[str]) -> list[str]:
    """The msrun command line that runs `python worker_args...` on this node's workers."""
    host, port = parse_master(spec.master) if spec.master else ("127.0.0.1", free_port())
    return [
        sys.executable, "-m", "mindspore.parallel.cluster.run",
        f"--worker_num={spec.world_size}",
        f"--local_worker_num={spec.nproc}",
        f"--master_addr={host}",
        f"--master_port={port}",
        f"--node_rank={spec.node_rank}",
        f"--log_dir={spec.log_dir}",
        "--join=True",
        f"--cluster_time_out={spec.cluster_timeout_s}",
        "--tail_worker_log=0",  # only global rank 0's log is echoed (the others are in log_dir)
        "python", *worker_args,
    ]  # fmt: skip


def worker_env(spec: LaunchSpec) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["MFT_NODE_RANK"] = str(spec.node_rank)
    env["MFT_LOG_DIR"] = spec.log_dir
    env.setdefault("GLOG_v", "3")  # MindSpore's own INFO/WARNING chatter off (errors stay)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # A CPU collective waits this long (s) for its peers. Pipeline stages compile different graphs, so the first
    # exchange waits for the slowest stage's compile: a DeepSeek-shaped stage with MTP took 75 s at load 20,
    # past the default (a worker that dies is noticed by the launcher, not by this timeout).
    env.setdefault("MS_CPU_COMM_OP_TIMEOUT", "600")
    env.update(spec.extra_env)
    return env


@dataclass
class LaunchResult:
    returncode: int
    failed_rank: int | None
    error: str | None
    output: str
    timed_out: bool = False


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and everything below it (msrun's workers run in sessions of their own)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue  # already gone: nothing left to kill
    psutil.wait_procs(procs, timeout=10)


def launch(spec: LaunchSpec, worker_args: list[str], timeout_s: float | None = None, echo=None) -> LaunchResult:
    """Runs msrun until every local worker (and the scheduler) exits; never leaves a process behind."""
    os.makedirs(spec.log_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(spec.log_dir, "rank_*.error")):
        os.remove(stale)
    cmd = msrun_command(spec, worker_args)
    proc = subprocess.Popen(
        cmd, env=worker_env(spec), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: list[str] = []
    timed_out = False
    deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def pump():
        for line in proc.stdout:
            lines.append(line)
            if echo is not None:
                echo(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # so `finally` below cleans up
    failed_at = None
    try:
        while proc.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                kill_tree(proc.pid)
                break
            if failed_at is None and glob.glob(os.path.join(spec.log_dir, "rank_*.error")):
                failed_at = time.monotonic()
            elif failed_at is not None and time.monotonic() - failed_at > FAILURE_GRACE_S:
                # msrun has killed the workers by now, but waits for the scheduler, which only
                # notices lost workers after its heartbeat timeout: end the run here.
                kill_tree(proc.pid)
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        kill_tree(proc.pid)
        raise
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
        proc.wait()
        reader.join(timeout=5)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    rc = proc.returncode
    if timed_out:
        rc = rc or 124
    elif failed_at is not None:
        rc = rc or 1
    rank, error = (None, None) if rc == 0 else first_failure(spec.log_dir)
    return LaunchResult(rc, rank, error, "".join(lines), timed_out)


def first_failure(log_dir: str) -> tuple[int | None, str | None]:
    """(rank, error line) of the earliest failure recorded in log_dir, or from the worker logs."""
    records = []
    for path in glob.glob(os.path.join(log_dir, "rank_*.error")):
        try:
            with open(path, encoding="utf-8") as f:
                records.append(json.load(f))
        except (OSError, ValueError):
            continue
    if records:
        first = min(records, key=lambda r: r["time"])
        return int(first["rank"]), first["error"]
    # A worker that died without reaching its handler (signal, abort): last error-looking line of its log.
    for path in sorted(glob.glob(os.path.join(log_dir, "worker_*.log"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            hits = [l.strip() for l in f if re.search(r"Error|Exception|Traceback|Segmentation", l)]
        if hits:
            return int(re.findall(r"\d+", os.path.basename(path))[-1]), hits[-1]
    return None, None


def write_failure(log_dir: str, rank: int, error: str) -> None:
    """Called by a failing worker: its error line, for the launcher to report."""
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, f"rank_{rank}.error")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"rank": rank, "time": time.time(), "error": error}, f)
    os.replace(tmp, path)



def launch_train(cfg, config_path: str, overrides: list[str], nproc: int, nnodes: int, node_rank: int, master: str | None) -> int:
    """`mft train CONFIG --nproc N [...]`: this node's share of the workers, through msrun."""
    from mft.parallel.groups import Layout

    layout = Layout.from_config(cfg.parallel)
    spec = LaunchSpec(nproc=nproc, nnodes=nnodes, node_rank=node_rank, master=master,
                      log_dir=os.path.join(os.path.abspath(cfg.run.output_dir), "logs"))  # fmt: skip
    if layout.world_size != spec.world_size:
        raise MftError(
            f"{config_path}: parallel layout dp*tp*pp*cp = {layout.world_size} processes, but --nproc {nproc} x "
            f"--nnodes {nnodes} = {spec.world_size}; set parallel.dp (and the others) to match"
        )
    worker_args = ["-m", "mft.parallel.worker", "train", os.path.abspath(config_path)]
    for override in overrides:
        worker_args += ["--set", override]
    result = launch(spec, worker_args, echo=print)
    if result.returncode != 0:
        where = f"rank {result.failed_rank} failed: {result.error}" if result.failed_rank is not None else "a worker failed"
        raise MftError(f"{where} (msrun exit {result.returncode}; logs in {spec.log_dir})")
    return 0
