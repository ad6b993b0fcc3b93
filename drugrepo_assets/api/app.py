"""The FastAPI application: /v1/predict, /v1/screen, /healthz, /readyz, /metrics (and /docs).

`create_app` builds the application object (`state.ApiState`, reached by the routes through `dependencies`)
from `ServingSettings` and includes one router per concern (`routes/`). The state holds the champion model
(`model_service`) and an optional challenger (split or shadow traffic, `challenger`; aliases followed in
`following`), the target cache and rate limiter (Redis when ``DRUGREPO_REDIS_URL`` is set, in process otherwise
or while Redis fails), the request log read by the drift report, and the bounded pool (`workpool`) where each
request's work runs (`handlers`): the event loop only moves bytes, so /healthz answers however busy the pool is.
The guard middleware (address rate, key, key rate, size) stands in front of /v1/. RDKit's work on the molecules
runs in worker processes started and closed with the app (`molecules`), each molecule within its budget, so no
molecule holds the server's GIL. The exception handlers are in `errors`, the OpenAPI document in `openapi`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI

from drugrepo_assets.api.errors import add_exception_handlers
from drugrepo_assets.api.guard import GuardMiddleware
from drugrepo_assets.api.model_service import ServedModel
from drugrepo_assets.api.openapi import install_openapi
from drugrepo_assets.api.routes import ROUTERS
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.api.state import ApiState

__all__ = ["create_app"]


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
    state = ApiState(settings, served, clock, follow_served)
    app = FastAPI(
        title="drugrepo prediction API",
        description="DrugBAN drug–target interaction scores. Send an API key in X-API-Key.",
        version="1",
        lifespan=state.lifespan,
    )
    app.state.api = state
    app.add_middleware(
        GuardMiddleware,
        keys=settings.keys(),
        limiter=state.limiter,
        ip_limiter=state.ip_limiter,
        max_body_bytes=settings.max_body_bytes,
        metrics=state.metrics,
    )
    add_exception_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_openapi(app)
    return app
