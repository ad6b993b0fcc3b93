"""The FastAPI application: /v1/predict, /v1/screen, /healthz, /readyz, /metrics (and /docs).

`create_app` wires the pieces from `ServingSettings`: the champion model (`model_service`) and an
optional challenger (split or shadow traffic, `challenger`), the target cache and rate limiter (Redis when ``DRUGREPO_REDIS_URL`` is set, in process otherwise or while Redis
fails), the request log read by the drift report, the guard middleware (address rate, key, key rate,
size) in front of /v1/, and the bounded pool (`workpool`) where each request's work runs
(`handlers`): the event loop only moves bytes, so /healthz answers however busy the pool is. RDKit's
work on the molecules runs in worker processes started and closed with the app (`molecules`), each
molecule within its budget, so no molecule holds the server's GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.security import APIKeyHeader

from drugrepo_assets.api import handlers
from drugrepo_assets.api.cache import LruTargetCache, RedisTargetCache, TargetCache
from drugrepo_assets.api.challenger import Assigner, ShadowRunner
from drugrepo_assets.api.guard import GuardMiddleware
from drugrepo_assets.api.handlers import Shadow, Work, error_response, invalid_response, json_response
from drugrepo_assets.api.metrics import CONTENT_TYPE_LATEST, ApiMetrics
from drugrepo_assets.api.model_service import (
    InputProblem,
    Scorer,
    ServedModel,
    alias_missing,
    load_challenger,
    load_served_model,
    registry_version,
)
from drugrepo_assets.api.molecules import Featuriser, descriptor_sandbox, request_sandbox
from drugrepo_assets.api.ratelimit import GcraLimiter, RateLimiter, RedisGcraLimiter
from drugrepo_assets.api.redislink import RedisLink, connect
from drugrepo_assets.api.request_log import RequestLog
from drugrepo_assets.api.schemas import (
    ErrorBody,
    InvalidInput,
    PredictRequest,
    PredictResponse,
    ScreenRequest,
    ScreenResponse,
)
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.api.stored_terms import TermsSupply
from drugrepo_assets.api.workpool import PoolBusy, WorkPool
from drugrepo_assets.ml.runtime import configure_cpu
from drugrepo_assets.request_records import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of DRUGREPO_API_KEYS.")
BUSY_RETRY_SECONDS = 1
REQUEST_MODELS = (PredictRequest, ScreenRequest)


@dataclass
class Runtime:
    """What the routes use, built at start-up; ``challenger`` is None while none is configured or loaded
    (``challenger_error`` then says why, for /readyz)."""

    settings: ServingSettings
    scorer: Scorer
    request_log: RequestLog
    metrics: ApiMetrics
    redis: RedisLink | None
    pool: WorkPool
    limiter: RateLimiter
    assigner: Assigner
    shadow_runner: ShadowRunner
    challenger: Scorer | None = None
    challenger_error: str | None = None

    def work(self) -> Work:
        """The work context of one request: the model that answers it, drawn now (the models as they are now,
        even if an alias moves meanwhile), and in shadow mode the challenger that scores a copy."""
        challenger = self.challenger
        args = (self.settings, self.scorer, self.limiter, self.request_log, self.metrics)
        if challenger is None or not self.assigner.draw():
            return Work(*args, CHAMPION)
        if self.settings.challenger_mode == "shadow":
            return Work(*args, CHAMPION, Shadow(challenger, self.shadow_runner))
        return Work(self.settings, challenger, self.limiter, self.request_log, self.metrics, CHALLENGER)

    def show(self, role: str, old: ServedModel | None, new: ServedModel | None) -> None:
        """Move the role's ``drugrepo_model_info`` series from ``old`` to ``new`` and set ``drugrepo_model_loaded``."""
        if old is not None and (new is None or (old.version, old.checkpoint_id) != (new.version, new.checkpoint_id)):
            with contextlib.suppress(KeyError):
                self.metrics.model_info.remove(old.version, old.checkpoint_id, role)
        if new is not None:
            self.metrics.model_info.labels(new.version, new.checkpoint_id, role).set(1)
        self.metrics.model_loaded.labels(role).set(int(new is not None))


def _redis(settings: ServingSettings, metrics: ApiMetrics) -> RedisLink | None:
    """The guarded Redis link, or None without DRUGREPO_REDIS_URL; Redis down at start-up only degrades."""
    if not settings.redis_url:
        return None
    link = RedisLink(connect(settings.redis_url, settings.redis_timeout_seconds), settings.redis_retry_seconds, metrics)
    if not link.ping():
        log.warning("Redis at %s does not answer: starting with the in-process cache and limiter", settings.redis_url)
    return link


def _challenger_status(rt: Runtime) -> dict[str, Any]:
    """The challenger's part of /readyz: mode, share, whether it is loaded and which model (or why not)."""
    status: dict[str, Any] = {
        "mode": rt.settings.challenger_mode,
        "share": rt.settings.challenger_share,
        "loaded": rt.challenger is not None,
        "shadow_queued": rt.shadow_runner.pending,
    }
    if rt.challenger is not None:
        status |= {"model_version": rt.challenger.served.version, "checkpoint_id": rt.challenger.served.checkpoint_id}
    if rt.challenger_error is not None:
        status["error"] = rt.challenger_error
    return status


def _key_id(request: Request, _: str | None = Depends(API_KEY_HEADER)) -> str:
    """The caller's key id, set by the guard middleware (the header dependency documents the scheme)."""
    return request.scope["state"]["key_id"]


def _body(model: type) -> dict[str, Any]:
    """OpenAPI of a JSON request body of ``model`` (the routes read the body themselves, on the pool)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No valid X-API-Key."},
    413: {
        "model": ErrorBody,
        "description": "Body over DRUGREPO_MAX_BODY_BYTES, or over a per-request budget (the message names it).",
    },
    422: {
        "model": InvalidInput,
        "description": "Not JSON of this shape, or a SMILES or sequence that cannot be scored.",
    },
    429: {"model": ErrorBody, "description": "Over the rate of the client address or of the key (Retry-After)."},
    500: {"model": ErrorBody, "description": "An unexpected failure (logged)."},
    503: {"model": ErrorBody, "description": "Every worker busy and the waiting line full (Retry-After)."},
}


def terms_supply(settings: ServingSettings, metrics: ApiMetrics) -> TermsSupply:
    """The target terms past the cache: the store of ``DRUGREPO_TARGET_TERMS`` (if set), sources and failures counted."""
    return TermsSupply(settings.target_terms, metrics.target_terms, metrics.target_terms_store_errors)


def create_app(
    settings: ServingSettings,
    served: ServedModel | None = None,
    clock: Callable[[], float] = time.time,
    follow_served: bool = False,
) -> FastAPI:
    """The API for ``settings``; the model is ``served`` or loaded from the settings at start-up.

    ``clock`` (seconds) drives the rate limits, so tests can move time; it must be shared between
    processes that share Redis (wall time by default). ``follow_served``: ``served`` was loaded from the
    settings (``drugrepo serve`` loads it before starting), so its registry alias is followed as if loaded here.
    """
    configure_cpu(settings.torch_threads)
    metrics = ApiMetrics()
    link = _redis(settings, metrics)
    limiter: RateLimiter = (
        RedisGcraLimiter(link, settings.rate_limit_per_minute, settings.rate_limit_burst, clock)
        if link is not None
        else GcraLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst, clock)
    )
    ip_limiter = GcraLimiter(settings.ip_rate_limit_per_minute, settings.ip_rate_limit_burst, clock)
    pool = WorkPool(settings.workers, settings.max_queued, metrics)
    runtime: dict[str, Runtime] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = served if served is not None else await asyncio.to_thread(load_served_model, settings)
        fallback = LruTargetCache(settings.cache_size, settings.cache_max_bytes)
        cache: TargetCache
        if link is not None:
            from drugrepo_assets.ml.screen import TargetTerms

            cache = RedisTargetCache(link, TargetTerms, settings.cache_ttl_seconds, fallback)
        else:
            cache = fallback
        molecules = Featuriser(request_sandbox(settings), metrics.molecules)  # RDKit's workers
        descriptors = descriptor_sandbox(settings)
        rt = Runtime(
            settings,
            Scorer(model, cache, molecules, supply=terms_supply(settings, metrics)),
            RequestLog(
                settings.request_log_dir,
                max_queued_pairs=settings.request_log_max_queued_pairs,
                registry=metrics.registry,
                descriptors=descriptors,
            ),
            metrics,
            link,
            pool,
            limiter,
            Assigner(settings.challenger_share, settings.challenger_seed),
            ShadowRunner(settings.shadow_max_queued, metrics),
        )
        rt.show(CHAMPION, None, model)
        if settings.has_challenger():
            metrics.challenger_share.labels(settings.challenger_mode).set(settings.challenger_share)
            await load_challenger_into(rt)
        gc.collect()
        gc.freeze()  # the start-up objects (torch, RDKit, the models) leave the collector's sweeps: shorter pauses
        runtime["rt"] = rt
        app.state.pool = pool
        champion = served is None or follow_served
        follows = (champion and settings.follows_alias()) or settings.follows_challenger()
        follower = asyncio.create_task(follow_aliases(rt, champion)) if follows else None
        try:
            yield
        finally:
            if follower is not None:
                follower.cancel()
            pool.close()
            rt.shadow_runner.close()
            runtime.pop("rt").request_log.close()
            molecules.close()
            descriptors.close()  # after the log: it writes what is queued with them

    async def load_challenger_into(rt: Runtime) -> None:
        """Load the configured challenger and serve it beside the champion; on failure, keep serving the champion
        only (logged, ``drugrepo_model_loaded{role="challenger"}`` 0, /readyz degraded with the reason)."""
        current = rt.challenger.served if rt.challenger is not None else None
        try:
            model = await asyncio.to_thread(load_challenger, settings)
            scorer = await asyncio.to_thread(
                Scorer, model, rt.scorer.cache, rt.scorer.molecules, supply=rt.scorer.supply
            )
        except Exception as exc:  # a challenger must never take the API down
            rt.challenger_error = f"{_challenger_source()}: {type(exc).__name__}: {exc}"
            if current is None or alias_missing(exc):
                rt.challenger = None
                rt.show(CHALLENGER, current, None)
            log.warning("challenger not loaded (%s), serving the champion: %s", _challenger_source(), exc)
            return
        rt.challenger, rt.challenger_error = scorer, None
        rt.show(CHALLENGER, current, model)
        log.info(
            "challenger %s serves %s (%s, share %s)",
            _challenger_source(),
            model.version,
            settings.challenger_mode,
            settings.challenger_share,
        )

    def _challenger_source() -> str:
        return settings.challenger_checkpoint or settings.challenger_uri() or ""

    async def follow_aliases(rt: Runtime, champion: bool) -> None:
        """Every ``model_refresh_seconds``, re-read the champion's alias (when it is followed) and the challenger's."""
        while True:
            await asyncio.sleep(settings.model_refresh_seconds)
            if champion and settings.follows_alias():
                await refresh_champion(rt)
            if settings.follows_challenger():
                await refresh_challenger(rt)

    async def refresh_champion(rt: Runtime) -> None:
        """When the alias names another version, load it and swap it in.

        Requests in flight finish on the model they started with; the registry being unreachable
        keeps the loaded model (logged, counted), never stops the API.
        """
        uri = settings.resolved_model_uri()
        current = rt.scorer.served
        try:
            if await asyncio.to_thread(registry_version, uri, settings.mlflow_tracking_uri) == current.version:
                return
            model = await asyncio.to_thread(load_served_model, settings)
            scorer = await asyncio.to_thread(
                Scorer, model, rt.scorer.cache, rt.scorer.molecules, supply=rt.scorer.supply
            )
        except Exception as exc:  # a registry or download failure must not take the API down
            metrics.model_refresh_failures.labels(CHAMPION).inc()
            log.warning("model refresh of %s failed, still serving %s: %s", uri, current.version, exc)
            return
        rt.scorer = scorer
        rt.show(CHAMPION, current, model)
        log.info("%s now serves %s (was %s)", uri, model.version, current.version)

    async def refresh_challenger(rt: Runtime) -> None:
        """Load the challenger when its alias names another version (or it is not loaded yet); drop it when the
        alias is gone (the challenger was dropped or promoted); keep it while the registry is out of reach."""
        uri = settings.challenger_uri() or ""
        current = rt.challenger.served if rt.challenger is not None else None
        try:
            version = await asyncio.to_thread(registry_version, uri, settings.mlflow_tracking_uri)
        except Exception as exc:
            if alias_missing(exc):
                if current is not None:
                    log.warning("challenger alias %s is gone: no longer serving %s", uri, current.version)
                rt.challenger, rt.challenger_error = None, f"{uri}: {type(exc).__name__}: {exc}"
                rt.show(CHALLENGER, current, None)
            else:
                metrics.model_refresh_failures.labels(CHALLENGER).inc()
                log.warning("challenger refresh of %s failed: %s", uri, exc)
            return
        if current is not None and version == current.version:
            return
        await load_challenger_into(rt)
        if rt.challenger_error is not None:
            metrics.model_refresh_failures.labels(CHALLENGER).inc()

    app = FastAPI(
        title="drugrepo prediction API",
        description="DrugBAN drug–target interaction scores. Send an API key in X-API-Key.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(
        GuardMiddleware,
        keys=settings.keys(),
        limiter=limiter,
        ip_limiter=ip_limiter,
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
    )

    def openapi() -> dict[str, Any]:
        """FastAPI's schema plus the request bodies, which the routes read themselves."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in REQUEST_MODELS:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> Response:
        problems = [
            InputProblem(0, ".".join(map(str, e.get("loc", ()))), "", str(e.get("msg", ""))) for e in exc.errors()
        ]
        return invalid_response(
            "the request does not have the documented shape (see /docs)", problems, settings.max_listed_problems
        )

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> Response:
        log.error("unhandled exception", exc_info=exc)
        return error_response(500, "internal error (logged by the server)")

    async def on_pool(job: Callable[[Work, bytes, str], Response], request: Request, key: str) -> Response:
        rt = runtime["rt"]
        raw = await request.body()
        try:
            return await rt.pool.run(job, rt.work(), raw, key)
        except PoolBusy:
            return error_response(
                503,
                "every worker is busy and the waiting line is full (DRUGREPO_WORKERS, "
                "DRUGREPO_MAX_QUEUED): try again shortly",
                BUSY_RETRY_SECONDS,
            )

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS, openapi_extra=_body(PredictRequest))
    async def predict(request: Request, key: str = Depends(_key_id)) -> Response:
        """Score pairs; the predictions come back in request order."""
        return await on_pool(handlers.predict, request, key)

    @app.post("/v1/screen", response_model=ScreenResponse, responses=ERRORS, openapi_extra=_body(ScreenRequest))
    async def screen(request: Request, key: str = Depends(_key_id)) -> Response:
        """Rank many molecules against one target with the screening engine (as ``drugrepo screen``)."""
        return await on_pool(handlers.screen, request, key)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the event loop answers (it never waits on scoring or Redis)."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        """Readiness: a model is loaded (503 before); "degraded" (200) while Redis is configured but unusable,
        the request log cannot write (it retries; requests are still answered) or a configured challenger is not
        loaded (the champion answers every request)."""
        rt = runtime.get("rt")
        if rt is None:
            return json_response(503, {"status": "loading"})
        ready: dict[str, Any] = {
            "status": "ready",
            "model_version": rt.scorer.served.version,
            "checkpoint_id": rt.scorer.served.checkpoint_id,
            "cache": rt.scorer.cache.backend,
            "pool": {"in_pool": rt.pool.in_pool, "capacity": rt.pool.capacity},
        }
        if rt.redis is not None and not (rt.redis.usable() and await asyncio.to_thread(rt.redis.ping)):
            ready |= {"status": "degraded", "cache": "memory (Redis unavailable)", "redis": rt.redis.last_error()}
        if settings.has_challenger():
            ready["challenger"] = _challenger_status(rt)
            if rt.challenger is None:
                ready["status"] = "degraded"
        log_status = rt.request_log.status()
        ready["request_log"] = {
            k: log_status[k] for k in ("healthy", "queued_pairs", "dropped_pairs", "write_failures", "last_error")
        }
        if not log_status["healthy"]:
            ready["status"] = "degraded"
        return json_response(200, ready)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
