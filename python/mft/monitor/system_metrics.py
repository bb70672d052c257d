"""Cheap per-step system metrics: peak memory and model-FLOPs utilisation (MFU).

- peak_memory_mb: the process's peak resident set (getrusage ru_maxrss; on
  CPU host and device memory are one). On an accelerator MindSpore's pool
  peak (`mindspore.runtime.max_memory_allocated`) is added as
  `device_peak_memory_mb` when it reports one (it reports 0 on CPU).
- mfu = train FLOPs per token (`mft plan`'s formula, `mft.plan.counts`) x
  tokens/s of this process / the ceiling. The ceiling is `monitor.peak_tflops`
  when set (accelerators: the datasheet number), else a float32 matmul rate
  measured once at start: numpy's sgemm on 1024^3 products for ~0.3 s, the
  best repetition (the same BLAS-bound ceiling benches/attention.py uses).
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / (1024.0 * 1024.0)  # macOS reports bytes


def device_peak_mb() -> float | None:
    """MindSpore's memory-pool peak in MB, or None where it has none (CPU reports 0)."""
    try:
        import mindspore as ms

        value = float(ms.runtime.max_memory_allocated())
    except Exception:  # noqa: BLE001 - an optional statistic: absent on some backends/versions
        return None
    return value / 2**20 if value > 0 else None


def measure_matmul_flops(seconds: float = 0.3, n: int = 1024) -> float:
    """Best float32 matmul rate (FLOP/s) of numpy's BLAS over ~`seconds`."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)  # warm-up (thread pool start, page faults)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    reps = 0
    while reps < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return 2.0 * n**3 / best


def train_flops_per_token(cfg) -> float:
    """Training FLOPs per token of the recipe's model, as `mft plan` computes them."""
    from mft.plan.counts import flops_per_token
    from mft.plan.shapes import inventory, model_sizes

    sizes = model_sizes(cfg)
    return float(flops_per_token(sizes, inventory(sizes), cfg.data.seq_len)["train"])


class MfuMeter:
    def __init__(self, flops_per_token: float, peak_flops: float, processes: int = 1):
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops  # per process
        self.processes = processes

    @classmethod
    def from_config(cls, cfg, processes: int = 1) -> "MfuMeter":
        peak = cfg.monitor.peak_tflops * 1e12 if cfg.monitor.peak_tflops > 0 else measure_matmul_flops()
        return cls(train_flops_per_token(cfg), peak, processes)

    def mfu(self, tokens_per_s: float) -> float:
        """tokens_per_s: the whole run's (all dp ranks); each process has its own ceiling."""
        return self.flops_per_token * tokens_per_s / (self.peak_flops * self.processes)
