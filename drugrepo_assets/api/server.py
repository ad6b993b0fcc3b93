"""Runs the API under uvicorn (``drugrepo serve``)."""

from __future__ import annotations

import uvicorn

from drugrepo_assets.api.app import create_app
from drugrepo_assets.api.settings import ServingSettings


def serve(settings: ServingSettings) -> None:
    """Serve the API on ``settings.host:settings.port`` until interrupted (one process, a thread pool)."""
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=False)
