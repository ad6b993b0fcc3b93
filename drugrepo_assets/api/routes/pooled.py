"""What the /v1/ routes share: their work runs on the bounded pool, and a full pool answers 503 at once."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import Response

from drugrepo_assets.api.handlers import Work, error_response
from drugrepo_assets.api.runtime import Runtime
from drugrepo_assets.api.workpool import PoolBusy

__all__ = ["BUSY_RETRY_SECONDS", "on_pool"]

BUSY_RETRY_SECONDS = 1


async def on_pool(rt: Runtime, job: Callable[[Work, bytes, str], Response], request: Request, key: str) -> Response:
    """Read the body, then run ``job`` on the pool with the models drawn now (503 with Retry-After when full)."""
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
