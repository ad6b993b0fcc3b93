"""The FastAPI application: /v1/predict, /v1/screen, /healthz, /readyz, /metrics (and /docs).

`create_app` wires the pieces from `ServingSettings`: the model (`model_service`), the target
cache and rate limiter (Redis when ``DRUGREPO_REDIS_URL`` is set, in process otherwise), the request
log read by the drift report, and the guard middleware (key, rate, size) in front of /v1/.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Optional

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader

from drugrepo_assets.api.cache import LruTargetCache, RedisTargetCache, TargetCache
from drugrepo_assets.api.guard import GuardMiddleware
from drugrepo_assets.api.metrics import CONTENT_TYPE_LATEST, ApiMetrics
from drugrepo_assets.api.model_service import (
    InvalidInputError,
    Scorer,
    ServedModel,
    clean_protein,
    clean_smiles,
    load_served_model,
    registry_version,
    scores,
)
from drugrepo_assets.api.ratelimit import RateLimiter, RedisWindowLimiter, TokenBucketLimiter
from drugrepo_assets.api.request_log import LoggedBatch, RequestLog
from drugrepo_assets.api.schemas import (
    InvalidInput,
    PredictRequest,
    PredictResponse,
    Prediction,
    ScreenHit,
    ScreenRequest,
    ScreenResponse,
)
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.ml.runtime import configure_cpu

log = logging.getLogger(__name__)

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of DRUGREPO_API_KEYS.")


@dataclass
class Runtime:
    """What the routes use, built at start-up."""

    settings: ServingSettings
    scorer: Scorer
    request_log: RequestLog
    metrics: ApiMetrics
    redis: Optional[Any]


def _redis(settings: ServingSettings) -> Optional[Any]:
    if not settings.redis_url:
        return None
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    client.ping()
    return client


def _key_id(request: Request, _: Optional[str] = Depends(API_KEY_HEADER)) -> str:
    """The caller's key id, set by the guard middleware (the header dependency documents the scheme)."""
    return request.scope["state"]["key_id"]


def create_app(settings: ServingSettings, served: Optional[ServedModel] = None) -> FastAPI:
    """The API for ``settings``; the model is ``served`` or loaded from the settings at start-up."""
    configure_cpu(settings.torch_threads)
    metrics = ApiMetrics()
    redis_client = _redis(settings)
    limiter: RateLimiter = (
        RedisWindowLimiter(redis_client, settings.rate_limit_per_minute)
        if redis_client is not None else TokenBucketLimiter(settings.rate_limit_per_minute)
    )
    runtime: dict[str, Runtime] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = served or load_served_model(settings)
        cache: TargetCache
        if redis_client is not None:
            from drugrepo_assets.ml.screen import TargetTerms

            cache = RedisTargetCache(redis_client, TargetTerms, settings.cache_ttl_seconds)
        else:
            cache = LruTargetCache(settings.cache_size)
        metrics.model_info.labels(model.version, model.model_id).set(1)
        runtime["rt"] = Runtime(settings, Scorer(model, cache), RequestLog(settings.request_log_dir), metrics, redis_client)
        follower = asyncio.create_task(follow_alias(runtime["rt"])) if served is None and settings.follows_alias() else None
        try:
            yield
        finally:
            if follower is not None:
                follower.cancel()
            runtime.pop("rt").request_log.close()

    async def follow_alias(rt: Runtime) -> None:
        """Every ``model_refresh_seconds``, re-read the alias; when it names another version, load it and swap it in.

        Requests in flight finish on the model they started with; the registry being unreachable
        keeps the loaded model (logged), never stops the API.
        """
        uri = settings.resolved_model_uri()
        while True:
            await asyncio.sleep(settings.model_refresh_seconds)
            current = rt.scorer.served
            try:
                if await asyncio.to_thread(registry_version, uri, settings.mlflow_tracking_uri) == current.version:
                    continue
                model = await asyncio.to_thread(load_served_model, settings)
                scorer = await asyncio.to_thread(Scorer, model, rt.scorer.cache)
            except Exception as exc:  # a registry or download failure must not take the API down
                log.warning("model refresh of %s failed, still serving %s: %s", uri, current.version, exc)
                continue
            rt.scorer = scorer
            metrics.model_info.labels(current.version, current.model_id).set(0)
            metrics.model_info.labels(model.version, model.model_id).set(1)
            log.info("%s now serves %s (was %s)", uri, model.version, current.version)

    app = FastAPI(
        title="drugrepo prediction API",
        description="DrugBAN drug–target interaction scores. Send an API key in X-API-Key.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(
        GuardMiddleware, keys=settings.keys(), limiter=limiter, max_body_bytes=settings.max_body_bytes, metrics=metrics
    )

    @app.exception_handler(InvalidInputError)
    async def invalid_input(_: Request, exc: InvalidInputError) -> JSONResponse:
        body = InvalidInput(detail=str(exc), errors=[p.as_dict() for p in exc.problems])
        return JSONResponse(status_code=422, content=body.model_dump())

    def count_cache(rt: Runtime, hits: list[bool]) -> None:
        backend = rt.scorer.cache.backend
        rt.metrics.cache.labels("hit", backend).inc(sum(hits))
        rt.metrics.cache.labels("miss", backend).inc(len(hits) - sum(hits))

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        responses={422: {"model": InvalidInput, "description": "A SMILES or sequence that cannot be scored."}},
    )
    def predict(body: PredictRequest, key: str = Depends(_key_id)) -> PredictResponse:
        """Score pairs; the predictions come back in request order."""
        rt = runtime["rt"]
        scorer = rt.scorer  # one model for the whole request, even if the alias moves meanwhile
        smiles = [clean_smiles(p.smiles) for p in body.pairs]
        proteins = [clean_protein(p.protein) for p in body.pairs]
        logits, hits = scorer.predict(smiles, proteins)
        probabilities = scores(logits)
        by_target = dict(zip(proteins, hits))
        count_cache(rt, list(by_target.values()))
        rt.metrics.pairs.labels("/v1/predict").inc(len(smiles))
        version = scorer.served.version
        rt.request_log.submit(LoggedBatch("/v1/predict", key, version, smiles, proteins, logits.tolist(), probabilities.tolist()))
        return PredictResponse(
            predictions=[Prediction(logit=float(x), score=float(y)) for x, y in zip(logits, probabilities)],
            model_version=version,
        )

    @app.post(
        "/v1/screen",
        response_model=ScreenResponse,
        responses={422: {"model": InvalidInput, "description": "A SMILES or the sequence cannot be scored."}},
    )
    def screen(body: ScreenRequest, key: str = Depends(_key_id)) -> JSONResponse | ScreenResponse:
        """Rank many molecules against one target with the screening engine (as ``drugrepo screen``)."""
        rt = runtime["rt"]
        if len(body.smiles) > rt.settings.max_screen_smiles:
            return JSONResponse(status_code=413, content={"detail": f"more than {rt.settings.max_screen_smiles} SMILES"})
        if body.ids is not None and len(body.ids) != len(body.smiles):
            return JSONResponse(status_code=422, content={"detail": "ids and smiles differ in length", "errors": []})
        protein = clean_protein(body.protein)
        smiles = [clean_smiles(s) for s in body.smiles]
        ids = body.ids or [str(i) for i in range(len(smiles))]
        scorer = rt.scorer
        table, hit = scorer.screen(protein, smiles, ids, body.top)
        count_cache(rt, [hit])
        rt.metrics.pairs.labels("/v1/screen").inc(len(smiles))
        version = scorer.served.version
        rt.request_log.submit(LoggedBatch("/v1/screen", key, version, table["smiles"].tolist(), [protein] * len(table),
                                          table["logit"].tolist(), table["score"].tolist()))
        hits = [
            ScreenHit(rank=int(r.rank), id=str(r.drug_id), smiles=str(r.smiles), logit=float(r.logit),
                      score=float(r.score), percentile=float(r.percentile))
            for r in table.itertuples()
        ]
        return ScreenResponse(results=hits, model_version=version)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Readiness: a model is loaded and Redis (when configured) answers."""
        rt = runtime.get("rt")
        if rt is None:
            return JSONResponse(status_code=503, content={"status": "loading"})
        if rt.redis is not None:
            try:
                rt.redis.ping()
            except Exception as exc:  # any Redis failure means not ready, never a crash
                return JSONResponse(status_code=503, content={"status": "redis unavailable", "error": str(exc)})
        return JSONResponse(content={"status": "ready", "model_version": rt.scorer.served.version,
                                     "cache": rt.scorer.cache.backend})

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
