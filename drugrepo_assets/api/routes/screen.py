"""POST /v1/screen: rank many molecules against one target."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from drugrepo_assets.api import handlers
from drugrepo_assets.api.dependencies import CallerKey, Started
from drugrepo_assets.api.openapi import ERRORS, request_body
from drugrepo_assets.api.routes.pooled import on_pool
from drugrepo_assets.api.schemas import ScreenRequest, ScreenResponse

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/screen", response_model=ScreenResponse, responses=ERRORS, openapi_extra=request_body(ScreenRequest))
async def screen(request: Request, key: CallerKey, rt: Started) -> Response:
    """Rank many molecules against one target with the screening engine (as ``drugrepo screen``)."""
    return await on_pool(rt, handlers.screen, request, key)
