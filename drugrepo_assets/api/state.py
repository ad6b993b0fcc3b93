"""The application object: the state every route shares, built with the app and started in its one lifespan.

Built with the app (the guard middleware needs them): settings, metrics, the Redis link, the rate limiters and
the bounded work pool. Started in `ApiState.lifespan`: the `Runtime` (the champion, an optional challenger, the
target cache, RDKit's workers, the request log) and the task that follows the registry aliases.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from drugrepo_assets.api.cache import LruTargetCache, RedisTargetCache, TargetCache
from drugrepo_assets.api.challenger import Assigner, ShadowRunner
from drugrepo_assets.api.following import follow_aliases, load_challenger_into
from drugrepo_assets.api.metrics import ApiMetrics
from drugrepo_assets.api.model_service import Scorer, ServedModel, load_served_model
from drugrepo_assets.api.molecules import Featuriser, descriptor_sandbox, request_sandbox
from drugrepo_assets.api.ratelimit import GcraLimiter, RateLimiter, RedisGcraLimiter
from drugrepo_assets.api.redislink import RedisLink, connect
from drugrepo_assets.api.request_log import RequestLog
from drugrepo_assets.api.runtime import Runtime, terms_supply
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.api.workpool import WorkPool
from drugrepo_assets.ml.runtime import configure_cpu
from drugrepo_assets.request_records import CHAMPION

log = logging.getLogger(__name__)

__all__ = ["ApiState"]


def _redis(settings: ServingSettings, metrics: ApiMetrics) -> RedisLink | None:
    """The guarded Redis link, or None without DRUGREPO_REDIS_URL; Redis down at start-up only degrades."""
    if not settings.redis_url:
        return None
    link = RedisLink(connect(settings.redis_url, settings.redis_timeout_seconds), settings.redis_retry_seconds, metrics)
    if not link.ping():
        log.warning("Redis at %s does not answer: starting with the in-process cache and limiter", settings.redis_url)
    return link


class ApiState:
    """The shared state of one app: ``runtime`` is None until the lifespan has started it (and after it ends).

    ``served``: the champion, or None to load it from the settings at start-up; ``follow_served``: ``served``
    was loaded from the settings, so its registry alias is followed as if loaded here. ``clock`` (seconds)
    drives the rate limits.
    """

    def __init__(
        self,
        settings: ServingSettings,
        served: ServedModel | None,
        clock: Callable[[], float],
        follow_served: bool,
    ) -> None:
        configure_cpu(settings.torch_threads)
        self.settings = settings
        self.served = served
        self.follow_served = follow_served
        self.metrics = ApiMetrics()
        self.redis = _redis(settings, self.metrics)
        self.limiter: RateLimiter = (
            RedisGcraLimiter(self.redis, settings.rate_limit_per_minute, settings.rate_limit_burst, clock)
            if self.redis is not None
            else GcraLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst, clock)
        )
        self.ip_limiter = GcraLimiter(settings.ip_rate_limit_per_minute, settings.ip_rate_limit_burst, clock)
        self.pool = WorkPool(settings.workers, settings.max_queued, self.metrics)
        self.runtime: Runtime | None = None

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Start the runtime and the alias follower; on the way out stop them, the pool, the log and the workers."""
        rt = await self._start()
        gc.collect()
        gc.freeze()  # the start-up objects (torch, RDKit, the models) leave the collector's sweeps: shorter pauses
        self.runtime = rt
        app.state.pool = self.pool
        champion = self.served is None or self.follow_served
        follows = (champion and self.settings.follows_alias()) or self.settings.follows_challenger()
        follower = asyncio.create_task(follow_aliases(rt, champion)) if follows else None
        try:
            yield
        finally:
            if follower is not None:
                follower.cancel()
            self.pool.close()
            self.runtime = None
            rt.close()

    async def _start(self) -> Runtime:
        """Load the champion (unless given), start RDKit's workers and the request log, then the challenger if any."""
        settings, metrics = self.settings, self.metrics
        model = self.served if self.served is not None else await asyncio.to_thread(load_served_model, settings)
        cache = self._cache()
        molecules = Featuriser(request_sandbox(settings), metrics.molecules)  # RDKit's workers
        descriptors = descriptor_sandbox(settings)
        rt = Runtime(
            settings=settings,
            scorer=Scorer(model, cache, molecules, supply=terms_supply(settings, metrics)),
            request_log=RequestLog(
                settings.request_log_dir,
                max_queued_pairs=settings.request_log_max_queued_pairs,
                registry=metrics.registry,
                descriptors=descriptors,
            ),
            metrics=metrics,
            redis=self.redis,
            pool=self.pool,
            limiter=self.limiter,
            assigner=Assigner(settings.challenger_share, settings.challenger_seed),
            shadow_runner=ShadowRunner(settings.shadow_max_queued, metrics),
            molecules=molecules,
            descriptors=descriptors,
        )
        rt.show(CHAMPION, None, model)
        if settings.has_challenger():
            metrics.challenger_share.labels(settings.challenger_mode).set(settings.challenger_share)
            await load_challenger_into(rt)
        return rt

    def _cache(self) -> TargetCache:
        """The target-terms cache: Redis (with the in-process LRU as its fallback) when configured, else the LRU."""
        fallback = LruTargetCache(self.settings.cache_size, self.settings.cache_max_bytes)
        if self.redis is None:
            return fallback
        from drugrepo_assets.screening.engine import TargetTerms

        return RedisTargetCache(self.redis, TargetTerms, self.settings.cache_ttl_seconds, fallback)
