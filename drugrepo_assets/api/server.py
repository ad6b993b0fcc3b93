"""Runs the API under uvicorn (``drugrepo serve``)."""

from __future__ import annotations

import sys

import uvicorn

from drugrepo_assets.api.app import create_app
from drugrepo_assets.api.settings import ServingSettings


def serve(settings: ServingSettings) -> None:
    """Serve the API on ``settings.host:settings.port`` until interrupted (one process, a bounded thread pool).

    The GIL switch interval is 1 ms (Python's default is 5 ms) so the event loop gets the interpreter
    back quickly from a worker running Python code: /healthz stays prompt while the pool is busy.
    """
    sys.setswitchinterval(0.001)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=False)
