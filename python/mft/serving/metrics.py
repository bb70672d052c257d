"""Prometheus metrics for `mft serve` (GET /metrics), in a registry of the server's own.

Gauges read the engine at scrape time (running/waiting sequences, KV-cache
blocks); time to first token and time per output token are observed per
sequence from the engine's updates, on the engine thread.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class ServingMetrics:
    def __init__(self, engine):
        self.registry = r = CollectorRegistry()
        stats = engine.stats
        Gauge("mft_requests_running", "sequences in the running batch", registry=r).set_function(lambda: stats()["running"])
        Gauge("mft_requests_waiting", "sequences waiting for admission", registry=r).set_function(lambda: stats()["waiting"])
        Gauge("mft_kv_cache_blocks_used", "KV-cache blocks held by sequences", registry=r).set_function(lambda: stats()["blocks_used"])
        Gauge("mft_kv_cache_blocks_total", "KV-cache blocks in the pool", registry=r).set_function(lambda: stats()["blocks_total"])
        Gauge("mft_kv_cache_usage_ratio", "fraction of KV-cache blocks in use", registry=r).set_function(
            lambda: stats()["blocks_used"] / max(stats()["blocks_total"], 1))
        Gauge("mft_preemptions", "sequences preempted (recomputed later) so far", registry=r).set_function(lambda: stats()["preemptions"])
        Gauge("mft_prefix_cache_hit_rate", "prompt tokens found in the prefix cache / prompt tokens looked up", registry=r).set_function(
            lambda: stats()["prefix_cache_hit_rate"])
        Gauge("mft_prefix_cache_hit_tokens", "prompt tokens served from shared cached blocks so far", registry=r).set_function(
            lambda: stats()["prefix_cache_hit_tokens"])
        Gauge("mft_prefix_cache_query_tokens", "prompt tokens looked up in the prefix cache so far", registry=r).set_function(
            lambda: stats()["prefix_cache_query_tokens"])
        Gauge("mft_kv_cache_blocks_shared", "KV-cache blocks held by more than one sequence", registry=r).set_function(
            lambda: stats()["blocks_shared"])
        self.ttft = Histogram("mft_time_to_first_token_seconds", "request arrival to a sequence's first token",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.tpot = Histogram("mft_time_per_output_token_seconds", "mean time between a sequence's tokens after the first",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.finished = Counter("mft_sequences_finished", "sequences finished, by reason", ["reason"], registry=r)
        self.tokens = Counter("mft_generation_tokens", "tokens generated", registry=r)
        self.prompt_tokens = Counter("mft_prompt_tokens", "prompt tokens admitted", registry=r)

    def track(self, on_update):
        """Wraps a request's update callback to time its sequences."""
        start = time.perf_counter()
        first: dict[int, float] = {}
        counts: dict[int, int] = {}

        def wrapped(request, update):
            if not isinstance(update, BaseException):
                now = time.perf_counter()
                n = len(update.tokens)
                if n and update.index not in first:
                    first[update.index] = now
                    self.ttft.observe(now - start)
                counts[update.index] = counts.get(update.index, 0) + n
                self.tokens.inc(n)
                if update.finish_reason is not None:
                    self.finished.labels(update.finish_reason).inc()
                    if counts[update.index] > 1:
                        self.tpot.observe((now - first[update.index]) / (counts[update.index] - 1))
            on_update(request, update)

        return wrapped

    def render(self) -> bytes:
        return generate_latest(self.registry)
