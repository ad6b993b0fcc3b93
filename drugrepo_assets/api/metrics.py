"""Prometheus metrics of the API, in a registry of their own (one per app, so tests can start several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

__all__ = ["CONTENT_TYPE_LATEST", "ApiMetrics"]


class ApiMetrics:
    """Request counts and latency by route and status, target-cache hits/misses, pairs scored, model version,
    Redis failures and degradation, the scoring pool's load and refusals, rate-limit refusals."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "drugrepo_requests", "HTTP requests by route and status code.", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "drugrepo_request_seconds",
            "Request latency by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache = Counter(
            "drugrepo_target_cache",
            "Target-terms cache lookups by result (hit, miss) and backend.",
            ["result", "backend"],
            registry=self.registry,
        )
        self.pairs = Counter("drugrepo_pairs_scored", "Pairs scored by route.", ["route"], registry=self.registry)
        self.model_info = Gauge(
            "drugrepo_model_info",
            "The model being served (value 1): its version and checkpoint id.",
            ["version", "checkpoint_id"],
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "drugrepo_redis_errors",
            "Redis calls that failed or were refused, by operation.",
            ["op"],
            registry=self.registry,
        )
        self.degraded = Gauge(
            "drugrepo_degraded",
            "1 while Redis is configured but skipped after a failure (in-process fallback).",
            registry=self.registry,
        )
        self.pool_busy = Gauge(
            "drugrepo_pool_requests", "Requests in the scoring pool, running or waiting.", registry=self.registry
        )
        self.pool_refused = Counter(
            "drugrepo_pool_refused",
            "Requests refused with 503 because the scoring pool was full.",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "drugrepo_rate_limited",
            "Requests refused with 429, by limit (ip, key, cost).",
            ["limit"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)
