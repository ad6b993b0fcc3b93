"""Prometheus metrics of the API, in a registry of their own (one per app, so tests can start several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
MODEL_LABELS = ["route", "model_version", "checkpoint_id", "role"]

__all__ = ["CONTENT_TYPE_LATEST", "ApiMetrics"]


class ApiMetrics:
    """Request counts and latency by route and status, target-cache hits/misses, target terms by source and the
    terms store's failures, pairs scored, the models served (per role: champion, challenger, shadow) with their
    requests, pairs and scores, Redis failures and degradation, the scoring pool's load and refusals, the
    molecules featurised per outcome, rate-limit refusals."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._http()
        self._target_terms()
        self._models()
        self._challenger()
        self._redis()
        self._pool()
        self._refusals()

    def _http(self) -> None:
        """Requests by route and status, and their latency."""
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

    def _target_terms(self) -> None:
        """Target-terms cache lookups, where the terms came from, and the terms store's failures."""
        self.cache = Counter(
            "drugrepo_target_cache",
            "Target-terms cache lookups by result (hit, miss) and backend.",
            ["result", "backend"],
            registry=self.registry,
        )
        self.target_terms = Counter(
            "drugrepo_target_terms",
            "Target terms requests needed, by source: cache (in-process or Redis), store (DRUGREPO_TARGET_TERMS, "
            "written by a screen or another replica) or computed (then stored).",
            ["source"],
            registry=self.registry,
        )
        self.target_terms_store_errors = Counter(
            "drugrepo_target_terms_store_errors",
            "Failures of the target-terms store, by kind (corrupt: a stored file that is not the checkpoint's terms, "
            "replaced; read; write; budget: past the replica's write budget): the terms were computed and the request answered.",
            ["kind"],
            registry=self.registry,
        )

    def _models(self) -> None:
        """Pairs scored, the models served per role, their alias refreshes, requests, pairs and scores."""
        self.pairs = Counter(
            "drugrepo_pairs_scored", "Pairs scored and answered, by route.", ["route"], registry=self.registry
        )
        self.model_info = Gauge(
            "drugrepo_model_info",
            "The models being served (value 1): version, checkpoint id and role (champion, challenger).",
            ["version", "checkpoint_id", "role"],
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "drugrepo_model_loaded",
            "1 while the role's model is loaded; 0 for a configured challenger that failed to load or was dropped.",
            ["role"],
            registry=self.registry,
        )
        self.model_refresh_failures = Counter(
            "drugrepo_model_refresh_failures",
            "Re-reads of a served alias that failed (registry out of reach, download or load failure), by role.",
            ["role"],
            registry=self.registry,
        )
        self.model_requests = Counter(
            "drugrepo_model_requests",
            "Requests scored, by route, model version, checkpoint id and role (shadow: copies scored off the answer path).",
            MODEL_LABELS,
            registry=self.registry,
        )
        self.model_pairs = Counter(
            "drugrepo_model_pairs",
            "Pairs scored, by route, model version, checkpoint id and role.",
            MODEL_LABELS,
            registry=self.registry,
        )
        self.scores = Histogram(
            "drugrepo_score",
            "Scores (sigmoid of the logit) of the pairs scored, by role: the online comparison of champion and challenger.",
            ["role"],
            buckets=SCORE_BUCKETS,
            registry=self.registry,
        )

    def _challenger(self) -> None:
        """The challenger's configured share and the shadow copies not scored."""
        self.challenger_share = Gauge(
            "drugrepo_challenger_share",
            "The configured share of requests that reach the challenger, by mode (split, shadow).",
            ["mode"],
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "drugrepo_shadow_dropped",
            "Shadow copies not scored, by reason (queue_full, error).",
            ["reason"],
            registry=self.registry,
        )

    def _redis(self) -> None:
        """Redis failures and the degraded (in-process) mode."""
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

    def _pool(self) -> None:
        """The scoring pool's load, capacity and refusals."""
        self.pool_busy = Gauge(
            "drugrepo_pool_requests", "Requests in the scoring pool, running or waiting.", registry=self.registry
        )
        self.pool_capacity = Gauge(
            "drugrepo_pool_capacity",
            "Requests the scoring pool holds at most (workers + waiting line); more are refused with 503.",
            registry=self.registry,
        )
        self.pool_refused = Counter(
            "drugrepo_pool_refused",
            "Requests refused with 503 because the scoring pool was full.",
            registry=self.registry,
        )

    def _refusals(self) -> None:
        """Molecules featurised per outcome and rate-limit refusals."""
        self.molecules = Counter(
            "drugrepo_molecules",
            "Distinct molecules of requests featurised by RDKit's workers, by outcome: featurised, refused (the "
            "input rules) or over_budget (DRUGREPO_MOLECULE_CPU_SECONDS, DRUGREPO_MOLECULE_MEMORY_MB).",
            ["outcome"],
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
