"""Latency percentiles and throughput of one load run (`mft eval --serving`).

Per request (all times from the client's clock): TTFT = send to the first
chunk carrying output; E2E = send to the end of the response; TPOT =
(E2E - TTFT) / (output tokens - 1); inter-token latencies (ITL) = the gaps
between successive chunks carrying output. A run reports mean, p50, p90,
p99 of each (ITL pooled over all requests), request/s, output tokens/s and
total tokens/s over the run's wall time. Percentiles interpolate linearly
between order statistics (numpy's default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PERCENTILES = (50, 90, 99)


@dataclass
class RequestResult:
    ok: bool
    error: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    ttft: float = float("nan")  # seconds
    e2e: float = float("nan")
    itl: list = field(default_factory=list)  # seconds between output chunks
    usage_reported: bool = False  # token counts from the server's usage, not counted from chunks

    @property
    def tpot(self) -> float:
        if self.output_tokens < 2:
            return float("nan")
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


def distribution(values_s) -> dict:
    """mean and percentiles in milliseconds of the finite values (None when there are none)."""
    v = np.asarray([x for x in values_s if x == x], dtype=np.float64) * 1000.0
    if v.size == 0:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}, "count": 0}
    out = {"mean": round(float(v.mean()), 3)}
    for p, q in zip(PERCENTILES, np.percentile(v, PERCENTILES)):
        out[f"p{p}"] = round(float(q), 3)
    out["count"] = int(v.size)
    return out


def summarize(results: list[RequestResult], wall_s: float, concurrency: int) -> dict:
    ok = [r for r in results if r.ok]
    errors = [r.error for r in results if not r.ok]
    prompt = sum(r.prompt_tokens for r in ok)
    output = sum(r.output_tokens for r in ok)
    rate = (lambda x: round(x / wall_s, 3)) if wall_s > 0 else (lambda x: None)
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "completed": len(ok),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "duration_s": round(wall_s, 3),
        "prompt_tokens": prompt,
        "output_tokens": output,
        "token_counts_from_usage": all(r.usage_reported for r in ok) if ok else None,
        "request_throughput": rate(len(ok)),
        "output_throughput": rate(output),
        "total_token_throughput": rate(prompt + output),
        "ttft_ms": distribution([r.ttft for r in ok]),
        "tpot_ms": distribution([r.tpot for r in ok]),
        "itl_ms": distribution([g for r in ok for g in r.itl]),
        "e2e_ms": distribution([r.e2e for r in ok]),
    }
