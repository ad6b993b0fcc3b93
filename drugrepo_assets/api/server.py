"""Runs the API under uvicorn (``drugrepo serve``), with deadlines for slow clients and a connection limit."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from drugrepo_assets.api.app import create_app
from drugrepo_assets.api.deadlines import with_deadlines
from drugrepo_assets.api.model_service import ServedModel
from drugrepo_assets.api.settings import ServingSettings


def uvicorn_options(settings: ServingSettings) -> dict[str, Any]:
    """uvicorn's options from the settings: address, the HTTP protocol with header and body deadlines
    (`deadlines.with_deadlines`), the connection limit, no WebSocket (the API has no such route)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "http": with_deadlines(settings.header_timeout_seconds, settings.body_timeout_seconds),
        "ws": "none",
        "limit_concurrency": settings.max_connections,
        "log_level": "info",
        "access_log": False,
    }


def serve(settings: ServingSettings, served: ServedModel | None = None) -> None:
    """Serve the API on ``settings.host:settings.port`` until interrupted (one process, a bounded thread pool).

    ``served``: the champion, already loaded from the settings (``drugrepo serve`` loads it first, so that a
    bad checkpoint is one error line); its registry alias is still followed. None: loaded at start-up.
    The GIL switch interval is 1 ms (Python's default is 5 ms) so the event loop gets the interpreter
    back quickly from a worker running Python code: /healthz stays prompt while the pool is busy.
    """
    sys.setswitchinterval(0.001)
    app = create_app(settings, served, follow_served=True)
    uvicorn.run(app, **uvicorn_options(settings))
