"""The served models kept current: the challenger loaded beside the champion, and the registry aliases of both
re-read every ``DRUGREPO_MODEL_REFRESH_SECONDS``; a registry or load failure never takes the API down."""

from __future__ import annotations

import asyncio
import logging

from drugrepo_assets.api.model_service import (
    Scorer,
    alias_missing,
    load_challenger,
    load_served_model,
    registry_version,
)
from drugrepo_assets.api.runtime import Runtime
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.request_records import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

__all__ = ["follow_aliases", "load_challenger_into"]


def _challenger_source(settings: ServingSettings) -> str:
    return settings.challenger_checkpoint or settings.challenger_uri() or ""


async def load_challenger_into(rt: Runtime) -> None:
    """Load the configured challenger and serve it beside the champion; on failure, keep serving the champion
    only (logged, ``drugrepo_model_loaded{role="challenger"}`` 0, /readyz degraded with the reason)."""
    settings = rt.settings
    current = rt.challenger.served if rt.challenger is not None else None
    try:
        model = await asyncio.to_thread(load_challenger, settings)
        scorer = await asyncio.to_thread(Scorer, model, rt.scorer.cache, rt.scorer.molecules, supply=rt.scorer.supply)
    except Exception as exc:  # a challenger must never take the API down
        rt.challenger_error = f"{_challenger_source(settings)}: {type(exc).__name__}: {exc}"
        if current is None or alias_missing(exc):
            rt.challenger = None
            rt.show(CHALLENGER, current, None)
        log.warning("challenger not loaded (%s), serving the champion: %s", _challenger_source(settings), exc)
        return
    rt.challenger, rt.challenger_error = scorer, None
    rt.show(CHALLENGER, current, model)
    log.info(
        "challenger %s serves %s (%s, share %s)",
        _challenger_source(settings),
        model.version,
        settings.challenger_mode,
        settings.challenger_share,
    )


async def follow_aliases(rt: Runtime, champion: bool) -> None:
    """Every ``model_refresh_seconds``, re-read the champion's alias (when it is followed) and the challenger's."""
    settings = rt.settings
    while True:
        await asyncio.sleep(settings.model_refresh_seconds)
        if champion and settings.follows_alias():
            await refresh_champion(rt)
        if settings.follows_challenger():
            await refresh_challenger(rt)


async def refresh_champion(rt: Runtime) -> None:
    """When the alias names another version, load it and swap it in.

    Requests in flight finish on the model they started with; the registry being unreachable
    keeps the loaded model (logged, counted), never stops the API.
    """
    settings = rt.settings
    uri = settings.resolved_model_uri()
    current = rt.scorer.served
    try:
        if await asyncio.to_thread(registry_version, uri, settings.mlflow_tracking_uri) == current.version:
            return
        model = await asyncio.to_thread(load_served_model, settings)
        scorer = await asyncio.to_thread(Scorer, model, rt.scorer.cache, rt.scorer.molecules, supply=rt.scorer.supply)
    except Exception as exc:  # a registry or download failure must not take the API down
        rt.metrics.model_refresh_failures.labels(CHAMPION).inc()
        log.warning("model refresh of %s failed, still serving %s: %s", uri, current.version, exc)
        return
    rt.scorer = scorer
    rt.show(CHAMPION, current, model)
    log.info("%s now serves %s (was %s)", uri, model.version, current.version)


async def refresh_challenger(rt: Runtime) -> None:
    """Load the challenger when its alias names another version (or it is not loaded yet); drop it when the
    alias is gone (the challenger was dropped or promoted); keep it while the registry is out of reach."""
    settings = rt.settings
    uri = settings.challenger_uri() or ""
    current = rt.challenger.served if rt.challenger is not None else None
    try:
        version = await asyncio.to_thread(registry_version, uri, settings.mlflow_tracking_uri)
    except Exception as exc:
        if alias_missing(exc):
            if current is not None:
                log.warning("challenger alias %s is gone: no longer serving %s", uri, current.version)
            rt.challenger, rt.challenger_error = None, f"{uri}: {type(exc).__name__}: {exc}"
            rt.show(CHALLENGER, current, None)
        else:
            rt.metrics.model_refresh_failures.labels(CHALLENGER).inc()
            log.warning("challenger refresh of %s failed: %s", uri, exc)
        return
    if current is not None and version == current.version:
        return
    await load_challenger_into(rt)
    if rt.challenger_error is not None:
        rt.metrics.model_refresh_failures.labels(CHALLENGER).inc()
