"""GET /healthz (liveness) and /readyz (readiness): answered on the event loop, however busy the pool is."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from drugrepo_assets.api.dependencies import State
from drugrepo_assets.api.handlers import json_response
from drugrepo_assets.api.runtime import Runtime

__all__ = ["router"]

router = APIRouter()

LOG_STATUS = ("healthy", "queued_pairs", "dropped_pairs", "write_failures", "last_error")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the event loop answers (it never waits on scoring or Redis)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: State) -> Response:
    """Readiness: a model is loaded (503 before); "degraded" (200) while Redis is configured but unusable,
    the request log cannot write (it retries; requests are still answered) or a configured challenger is not
    loaded (the champion answers every request)."""
    rt = state.runtime
    if rt is None:
        return json_response(503, {"status": "loading"})
    return json_response(200, await _readiness(rt))


async def _readiness(rt: Runtime) -> dict[str, Any]:
    """The body of /readyz for a started app."""
    ready: dict[str, Any] = {
        "status": "ready",
        "model_version": rt.scorer.served.version,
        "checkpoint_id": rt.scorer.served.checkpoint_id,
        "cache": rt.scorer.cache.backend,
        "pool": {"in_pool": rt.pool.in_pool, "capacity": rt.pool.capacity},
    }
    if rt.redis is not None and not (rt.redis.usable() and await asyncio.to_thread(rt.redis.ping)):
        ready |= {"status": "degraded", "cache": "memory (Redis unavailable)", "redis": rt.redis.last_error()}
    if rt.settings.has_challenger():
        ready["challenger"] = rt.challenger_status()
        if rt.challenger is None:
            ready["status"] = "degraded"
    log_status = rt.request_log.status()
    ready["request_log"] = {k: log_status[k] for k in LOG_STATUS}
    if not log_status["healthy"]:
        ready["status"] = "degraded"
    return ready
