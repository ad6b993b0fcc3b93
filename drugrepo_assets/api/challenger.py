"""Champion/challenger traffic: which model takes a request, and the shadow copies scored off the answer path.

``split``: each request is drawn once (`Assigner`, a seeded RNG when ``DRUGREPO_CHALLENGER_SEED`` is set)
and answered by the challenger with probability ``DRUGREPO_CHALLENGER_SHARE``. ``shadow``: the champion
answers every request; a drawn request's inputs are also scored by the challenger on one background
thread (`ShadowRunner`), whose results go to the request log (role ``shadow``, same ``request_id`` and
pair index as the champion's records) and the metrics, never to the client. A full shadow queue drops
the copy and counts it: the answers never wait for the challenger.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from drugrepo_assets.api.metrics import ApiMetrics

log = logging.getLogger(__name__)

__all__ = ["Assigner", "ShadowRunner"]


class Assigner:
    """Per-request draws of whether the challenger takes a request (probability ``share``); thread-safe."""

    def __init__(self, share: float, seed: int | None = None) -> None:
        if not 0 <= share <= 1:
            raise ValueError(f"share {share} is not within 0..1")
        self.share = share
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> bool:
        """True for a request the challenger takes; share 0 never draws (the sequence is left untouched)."""
        if self.share <= 0:
            return False
        with self._lock:
            return self._rng.random() < self.share


class ShadowRunner:
    """One thread that runs shadow jobs, at most ``max_queued`` waiting; `submit` never blocks."""

    def __init__(self, max_queued: int, metrics: ApiMetrics) -> None:
        self.max_queued = max_queued
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drugrepo-shadow")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Shadow jobs running or waiting now."""
        return self._pending

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; False (counted as dropped, reason queue_full) when ``max_queued`` jobs already wait."""
        with self._lock:
            if self._pending >= self.max_queued:
                self.metrics.shadow_dropped.labels("queue_full").inc()
                return False
            self._pending += 1
        try:
            self._executor.submit(self._run, job)
        except RuntimeError:  # closed: the API is stopping, not a queue that is too short (not counted as a drop)
            self._finish()
            return False
        return True

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:  # a challenger failure must never reach a client; it is logged and counted
            log.exception("shadow scoring failed")
            self.metrics.shadow_dropped.labels("error").inc()
        finally:
            self._finish()

    def _finish(self) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        """Stop taking jobs; drop the waiting ones, let the running one finish."""
        self._executor.shutdown(wait=False, cancel_futures=True)
