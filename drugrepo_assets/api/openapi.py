"""The API's OpenAPI document: the error answers of the /v1/ routes and their JSON request bodies, which the
routes read themselves (on the pool), so FastAPI cannot see them."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from drugrepo_assets.api.schemas import ErrorBody, InvalidInput, PredictRequest, ScreenRequest

__all__ = ["ERRORS", "install_openapi", "request_body"]

REQUEST_MODELS = (PredictRequest, ScreenRequest)

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


def request_body(model: type) -> dict[str, Any]:
    """OpenAPI of a JSON request body of ``model`` (the routes read the body themselves, on the pool)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


def _schema(app: FastAPI) -> dict[str, Any]:
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


def install_openapi(app: FastAPI) -> None:
    """Serve `_schema` as ``app``'s /openapi.json (and /docs)."""
    app.openapi = partial(_schema, app)  # type: ignore[method-assign]
