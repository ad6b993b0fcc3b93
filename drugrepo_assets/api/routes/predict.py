"""POST /v1/predict: score drug–target pairs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from drugrepo_assets.api import handlers
from drugrepo_assets.api.dependencies import CallerKey, Started
from drugrepo_assets.api.openapi import ERRORS, request_body
from drugrepo_assets.api.routes.pooled import on_pool
from drugrepo_assets.api.schemas import PredictRequest, PredictResponse

__all__ = ["router"]

router = APIRouter()


@router.post(
    "/v1/predict", response_model=PredictResponse, responses=ERRORS, openapi_extra=request_body(PredictRequest)
)
async def predict(request: Request, key: CallerKey, rt: Started) -> Response:
    """Score pairs; the predictions come back in request order."""
    return await on_pool(rt, handlers.predict, request, key)
