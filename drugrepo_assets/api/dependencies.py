"""What the routes take through ``Depends``: the app's shared state, its started runtime, the caller's key id."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from drugrepo_assets.api.runtime import Runtime
from drugrepo_assets.api.state import ApiState

__all__ = ["API_KEY_HEADER", "CallerKey", "Started", "State", "api_state", "caller_key", "started"]

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of DRUGREPO_API_KEYS.")


async def api_state(request: Request) -> ApiState:
    """The app's `ApiState` (set by `create_app`)."""
    state: ApiState = request.app.state.api
    return state


async def started(request: Request) -> Runtime:
    """The runtime of a started app (the /v1/ routes are only reached once the lifespan has started it)."""
    runtime = (await api_state(request)).runtime
    if runtime is None:
        raise RuntimeError("the API has not started")
    return runtime


def caller_key(request: Request, _: str | None = Depends(API_KEY_HEADER)) -> str:
    """The caller's key id, set by the guard middleware (the header dependency documents the scheme)."""
    return request.scope["state"]["key_id"]


State = Annotated[ApiState, Depends(api_state)]
Started = Annotated[Runtime, Depends(started)]
CallerKey = Annotated[str, Depends(caller_key)]
