"""GET /metrics: the app's Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from drugrepo_assets.api.dependencies import State
from drugrepo_assets.api.metrics import CONTENT_TYPE_LATEST

__all__ = ["router"]

router = APIRouter()


@router.get("/metrics")
async def prometheus_metrics(state: State) -> Response:
    """Prometheus metrics (text exposition format)."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
