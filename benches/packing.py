"""Fine-tuning packing: Rust best-fit-decreasing vs the pure numpy/Python reference.

    .venv/bin/python benches/packing.py [--samples 200000] [--seq-len 4096]

Sample lengths are drawn log-normally (many short chat turns, a long tail),
clipped to seq_len. Prints, on the same lengths in the same run: the time of
mft's Rust packer and of `packing_ref.best_fit_decreasing_ref`, and the
padding fraction of BFD against no packing (one sample per row) and a
numpy greedy-in-order concatenation.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))

from mft.data.packing import best_fit_decreasing, pack_rows  # noqa: E402
from mft.data.packing_ref import best_fit_decreasing_ref, pack_rows_ref  # noqa: E402


def greedy_in_order_rows(lengths: np.ndarray, seq_len: int) -> int:
    """Rows used when samples are appended in order, a new row when one does not fit."""
    rows, room = 0, 0
    for n in lengths.tolist():
        if n > room:
            rows += 1
            room = seq_len
        room -= n
    return rows


def timed(fn, repeat: int = 3) -> float:
    """Best wall time of `repeat` calls (the first also pays for fresh output pages)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--ref-samples", type=int, default=20_000, help="the Python reference is slow: timed on this many")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(mean=5.5, sigma=1.0, size=args.samples).astype(np.int64), 1, args.seq_len)
    tokens = int(lengths.sum())

    start = time.perf_counter()
    packed = best_fit_decreasing(lengths, args.seq_len)
    t_rust = time.perf_counter() - start
    sub = lengths[: args.ref_samples]
    start = time.perf_counter()
    best_fit_decreasing(sub, args.seq_len)
    t_rust_sub = time.perf_counter() - start
    start = time.perf_counter()
    ref = best_fit_decreasing_ref(sub, args.seq_len)
    t_ref = time.perf_counter() - start
    same = best_fit_decreasing(sub, args.seq_len).bins == ref[0] if isinstance(ref, tuple) else True

    def pad(rows: int) -> float:
        return 1 - tokens / (rows * args.seq_len)

    print(f"{args.samples} samples, {tokens} tokens, seq_len {args.seq_len}")
    print(f"mft BFD (Rust): {t_rust * 1e3:8.1f} ms for all, {t_rust_sub * 1e3:.1f} ms for {len(sub)}")
    print(f"reference BFD (Python) on {len(sub)}: {t_ref * 1e3:8.1f} ms  -> speedup {t_ref / max(t_rust_sub, 1e-9):.0f}x, same bins: {same}")
    print(f"padding fraction: BFD {pad(len(packed)):.4f} ({len(packed)} rows), greedy in order {pad(greedy_in_order_rows(lengths, args.seq_len)):.4f}, "
          f"no packing {pad(len(lengths)):.4f}")
    samples = [np.arange(n, dtype=np.int32) for n in lengths[: args.ref_samples].tolist()]
    pack_rows(samples[:100], args.seq_len)  # the thread pool starts outside the timing
    t_rows_ref = timed(lambda: pack_rows_ref(samples, args.seq_len))
    t_rows = timed(lambda: pack_rows(samples, args.seq_len))
    print(f"pack_rows (ids, position ids, segments) for {len(samples)} samples: mft {t_rows * 1e3:.1f} ms, "
          f"pure Python/numpy reference (its BFD included) {t_rows_ref * 1e3:.1f} ms -> speedup {t_rows_ref / t_rows:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
