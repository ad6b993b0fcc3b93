"""The API's routers, one module per concern, in the order the app includes them (and /docs lists them)."""

from __future__ import annotations

from drugrepo_assets.api.routes import health, metrics, predict, screen

__all__ = ["ROUTERS"]

ROUTERS = (predict.router, screen.router, health.router, metrics.router)
