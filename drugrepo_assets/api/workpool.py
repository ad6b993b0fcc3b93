"""The bounded pool that runs the API's CPU work (parsing bodies, RDKit, torch) off the event loop.

``workers`` threads run jobs; at most ``max_queued`` more wait for one. A job beyond that is refused
at once with `PoolBusy` (the API answers 503 with Retry-After) instead of queueing without bound,
so the event loop stays free for /healthz, /readyz and /metrics however much work arrives. A job
counts until its thread finishes it, even when its client has gone away meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from drugrepo_assets.api.metrics import ApiMetrics

T = TypeVar("T")


class PoolBusy(RuntimeError):
    """Every worker is busy and the waiting line is full."""


class WorkPool:
    """``workers`` threads and a waiting line of ``max_queued`` jobs; `run` is called from the event loop only."""

    def __init__(self, workers: int, max_queued: int, metrics: ApiMetrics | None = None) -> None:
        self.capacity = workers + max_queued
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drugrepo-worker")
        self._in_pool = 0
        if metrics is not None:
            metrics.pool_capacity.set(self.capacity)

    @property
    def in_pool(self) -> int:
        """Jobs running or waiting now."""
        return self._in_pool

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread; `PoolBusy` when the pool is full."""
        loop = asyncio.get_running_loop()
        if self._in_pool >= self.capacity:
            if self.metrics is not None:
                self.metrics.pool_refused.inc()
            raise PoolBusy(f"{self._in_pool} requests in the pool (capacity {self.capacity})")
        self._in_pool += 1
        self._gauge()
        future = self._executor.submit(fn, *args)
        future.add_done_callback(lambda _: self._release(loop))
        return await asyncio.wrap_future(future)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed (shutdown): nothing left to count
            loop.call_soon_threadsafe(self._done)

    def _done(self) -> None:
        self._in_pool -= 1
        self._gauge()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.pool_busy.set(self._in_pool)

    def close(self) -> None:
        """Stop taking jobs; let the running ones finish."""
        self._executor.shutdown(wait=False, cancel_futures=True)
