"""The API's Redis connection, guarded: every call has a socket timeout and no retries, and a failure
opens a breaker so that for ``retry_seconds`` the callers use their in-process fallback at once
instead of waiting on a frozen or dead server again (the API degrades, it does not stall)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from drugrepo_assets.api.metrics import ApiMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class RedisUnavailable(RuntimeError):
    """Redis did not answer (or refused the command): the caller falls back to its in-process path."""


def connect(url: str, timeout_seconds: float) -> Any:
    """A Redis client whose calls give up after ``timeout_seconds`` (connect and read) and never retry."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 0),
    )


class RedisLink:
    """A Redis client behind a breaker: ``call`` runs one operation or raises `RedisUnavailable`.

    A connection failure or timeout opens the breaker for ``retry_seconds`` (calls raise at once, the
    ``drugrepo_degraded`` gauge is 1); the first call after that tries Redis again. An error answer
    (e.g. OOM under ``maxmemory``) is counted but leaves the breaker closed: Redis is up.
    """

    def __init__(
        self, client: Any, retry_seconds: float, metrics: ApiMetrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.retry_seconds = retry_seconds
        self.metrics = metrics
        self.clock = clock
        self._open_until = float("-inf")
        self._last_error: str | None = None
        self._lock = threading.Lock()

    def usable(self) -> bool:
        """Whether a call would try Redis now (the breaker is closed)."""
        return self.clock() >= self._open_until

    def last_error(self) -> str | None:
        """The last failure, while the breaker is open; None otherwise."""
        return None if self.usable() else self._last_error

    def call(self, op: str, fn: Callable[[Any], T]) -> T:
        """``fn(client)``, or `RedisUnavailable` when the breaker is open or the call fails."""
        import redis

        if not self.usable():
            raise RedisUnavailable(f"Redis skipped after a failure: {self._last_error}")
        try:
            result = fn(self.client)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            self._trip(op, exc)
            raise RedisUnavailable(f"Redis {op} failed: {exc}") from exc
        except redis.RedisError as exc:
            self.metrics.redis_errors.labels(op).inc()
            log.warning("Redis %s refused: %s", op, exc)
            raise RedisUnavailable(f"Redis {op} refused: {exc}") from exc
        self.metrics.degraded.set(0)
        return result

    def ping(self) -> bool:
        """Whether Redis answers a PING now (a failure opens the breaker like any call)."""
        try:
            return bool(self.call("ping", lambda c: c.ping()))
        except RedisUnavailable:
            return False

    def _trip(self, op: str, exc: BaseException) -> None:
        with self._lock:
            self._open_until = self.clock() + self.retry_seconds
            self._last_error = f"{op}: {type(exc).__name__}: {exc}"
        self.metrics.redis_errors.labels(op).inc()
        self.metrics.degraded.set(1)
        log.warning("Redis %s failed (%s); in-process cache and limiter for %.1f s", op, exc, self.retry_seconds)
