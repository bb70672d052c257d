"""Before the first write under `run.output_dir`: the run folder's layout (`RunPaths`), the checks of
what this build supports (`check_supported`), which checkpoint to resume from (`resolve_resume`), and
the per-rank log file (`setup_logging`). Used by training/trainer.py."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from mft.config import Config
from mft.errors import MftError
from mft.training.checkpoint import latest_checkpoint, verify_checkpoint


@dataclass
class RunPaths:
    output_dir: str

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.output_dir, "checkpoints")

    @property
    def metrics(self) -> str:
        return os.path.join(self.output_dir, "metrics.jsonl")

    @property
    def logs(self) -> str:
        return os.path.join(self.output_dir, "logs")

    @property
    def tensorboard(self) -> str:
        return os.path.join(self.output_dir, "tensorboard")

    @property
    def config(self) -> str:
        return os.path.join(self.output_dir, "config.yaml")


def check_supported(cfg: Config) -> None:
    p = cfg.parallel
    from mft.parallel.pipeline_config import check_config as check_pipeline

    check_pipeline(cfg)  # parallel.pp / pp_layers / micro_batches, and what pp does not run with
    from mft.parallel.zero_config import check_config as check_zero

    check_zero(cfg)  # parallel.zero: stage 0/1/2, adamw only
    from mft.parallel.tensor_parallel import check_config as check_tensor_parallel

    check_tensor_parallel(cfg)  # parallel.tp / parallel.sp
    from mft.parallel.context_parallel import check_config as check_context_parallel

    check_context_parallel(cfg)  # parallel.cp
    from mft.parallel.expert_parallel import check_config as check_expert_parallel

    check_expert_parallel(cfg)  # parallel.ep
    if p.dp < 1:
        raise MftError(f"parallel.dp must be >= 1, got {p.dp}")
    for key in ("steps", "micro_batch_size", "grad_accum_steps"):
        if getattr(cfg.train, key) < 1:
            raise MftError(f"train.{key} must be >= 1, got {getattr(cfg.train, key)}")
    if cfg.data.seq_len < 2:
        raise MftError(f"data.seq_len must be >= 2, got {cfg.data.seq_len}")
    if cfg.checkpoint.every_steps < 0:
        raise MftError(f"checkpoint.every_steps must be >= 0, got {cfg.checkpoint.every_steps}")
    if cfg.train.micro_batch_size % p.dp:
        raise MftError(
            f"train.micro_batch_size={cfg.train.micro_batch_size} is the global micro-batch, split across "
            f"parallel.dp={p.dp} ranks; make it a multiple of parallel.dp"
        )
    if cfg.monitor.histograms_every < 0:
        raise MftError(f"monitor.histograms_every must be >= 0 (0 = off), got {cfg.monitor.histograms_every}")
    if cfg.monitor.histograms_every and not cfg.monitor.tensorboard:
        raise MftError("monitor.histograms_every: histograms go to TensorBoard; set monitor.tensorboard=true or histograms_every=0")
    if cfg.monitor.grad_histograms and not cfg.monitor.histograms_every:
        raise MftError("monitor.grad_histograms: set monitor.histograms_every=N (> 0) to say how often")
    from mft.training.memory_modes import check_offload

    check_offload(cfg)  # train.offload_activations
    check_devices(cfg)  # last: a valid layout that is short of processes says how many it needs


def check_devices(cfg: Config) -> None:
    """Outside msrun a layout of N > 1 ranks cannot run: say how many devices it needs, before any data is read."""
    p = cfg.parallel
    world = p.dp * p.tp * p.pp * p.cp
    if world > 1 and os.environ.get("MS_ROLE", "") not in ("MS_WORKER", "MS_SCHED"):
        raise MftError(
            f"the parallel layout dp*tp*pp*cp = {p.dp}*{p.tp}*{p.pp}*{p.cp} needs {world} devices (processes), one "
            f"process is running; launch it with `mft train CONFIG --nproc {world}` (or --nnodes N --nproc {world}/N "
            "on each of N nodes)"
        )


def resolve_resume(cfg: Config, paths: RunPaths, warn=None) -> str | None:
    """The checkpoint folder to resume from, or None for a fresh run.

    auto: the newest complete checkpoint (a damaged newer one is skipped; `warn` gets why).
    A path: it must match its manifest."""
    resume = cfg.checkpoint.resume
    has_run = os.path.exists(paths.metrics) or os.path.isdir(paths.checkpoints)
    if resume == "never":
        if has_run:
            raise MftError(
                f"run.output_dir {paths.output_dir} already holds a run (metrics.jsonl / checkpoints); "
                "set checkpoint.resume=auto to continue it, or choose another run.output_dir"
            )
        return None
    if resume == "auto":
        return latest_checkpoint(paths.checkpoints, warn=warn)
    if not os.path.isdir(resume):
        raise MftError(f"checkpoint.resume: {resume} is not a checkpoint folder (expected never, auto or a path)")
    verify_checkpoint(resume)
    return resume


def setup_logging(paths: RunPaths, rank: int = 0) -> logging.Logger:
    os.makedirs(paths.logs, exist_ok=True)
    logger = logging.getLogger(f"mft.train.rank{rank}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = logging.FileHandler(os.path.join(paths.logs, f"rank_{rank}.log"), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger
