"""What the routes use once the app has started: the models (champion, optional challenger), the request log and
RDKit's workers, beside the shared pieces built with the app (settings, metrics, Redis, pool, limiter)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from drugrepo_assets.api.challenger import Assigner, ShadowRunner
from drugrepo_assets.api.handlers import Shadow, Work
from drugrepo_assets.api.metrics import ApiMetrics
from drugrepo_assets.api.model_service import Scorer, ServedModel
from drugrepo_assets.api.molecules import Featuriser
from drugrepo_assets.api.ratelimit import RateLimiter
from drugrepo_assets.api.redislink import RedisLink
from drugrepo_assets.api.request_log import RequestLog
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.api.stored_terms import TermsSupply
from drugrepo_assets.api.workpool import WorkPool
from drugrepo_assets.data.sandbox import Sandbox
from drugrepo_assets.request_records import CHALLENGER, CHAMPION

__all__ = ["Runtime", "terms_supply"]


def terms_supply(settings: ServingSettings, metrics: ApiMetrics) -> TermsSupply:
    """The target terms past the cache: the store of ``DRUGREPO_TARGET_TERMS`` (if set) within the replica's write
    budget, sources and failures counted."""
    return TermsSupply(
        settings.target_terms,
        metrics.target_terms,
        metrics.target_terms_store_errors,
        write_budget_bytes=settings.target_terms_write_mib * 2**20,
    )


@dataclass
class Runtime:
    """What the routes use, built at start-up; ``challenger`` is None while none is configured or loaded
    (``challenger_error`` then says why, for /readyz). ``molecules`` (the requests' RDKit workers, shared by every
    scorer) and ``descriptors`` (the request log's) are closed with it."""

    settings: ServingSettings
    scorer: Scorer
    request_log: RequestLog
    metrics: ApiMetrics
    redis: RedisLink | None
    pool: WorkPool
    limiter: RateLimiter
    assigner: Assigner
    shadow_runner: ShadowRunner
    molecules: Featuriser
    descriptors: Sandbox[Any]
    challenger: Scorer | None = None
    challenger_error: str | None = None

    def work(self) -> Work:
        """The work context of one request: the model that answers it, drawn now (the models as they are now,
        even if an alias moves meanwhile), and in shadow mode the challenger that scores a copy."""
        challenger = self.challenger
        args = (self.settings, self.scorer, self.limiter, self.request_log, self.metrics)
        if challenger is None or not self.assigner.draw():
            return Work(*args, CHAMPION)
        if self.settings.challenger_mode == "shadow":
            return Work(*args, CHAMPION, Shadow(challenger, self.shadow_runner))
        return Work(self.settings, challenger, self.limiter, self.request_log, self.metrics, CHALLENGER)

    def show(self, role: str, old: ServedModel | None, new: ServedModel | None) -> None:
        """Move the role's ``drugrepo_model_info`` series from ``old`` to ``new`` and set ``drugrepo_model_loaded``."""
        if old is not None and (new is None or (old.version, old.checkpoint_id) != (new.version, new.checkpoint_id)):
            with contextlib.suppress(KeyError):
                self.metrics.model_info.remove(old.version, old.checkpoint_id, role)
        if new is not None:
            self.metrics.model_info.labels(new.version, new.checkpoint_id, role).set(1)
        self.metrics.model_loaded.labels(role).set(int(new is not None))

    def challenger_status(self) -> dict[str, Any]:
        """The challenger's part of /readyz: mode, share, whether it is loaded and which model (or why not)."""
        status: dict[str, Any] = {
            "mode": self.settings.challenger_mode,
            "share": self.settings.challenger_share,
            "loaded": self.challenger is not None,
            "shadow_queued": self.shadow_runner.pending,
        }
        if self.challenger is not None:
            status |= {
                "model_version": self.challenger.served.version,
                "checkpoint_id": self.challenger.served.checkpoint_id,
            }
        if self.challenger_error is not None:
            status["error"] = self.challenger_error
        return status

    def close(self) -> None:
        """Stop the shadow thread, write what the request log holds, then stop RDKit's workers (the log's last)."""
        self.shadow_runner.close()
        self.request_log.close()
        self.molecules.close()
        self.descriptors.close()  # after the log: it writes what is queued with them
