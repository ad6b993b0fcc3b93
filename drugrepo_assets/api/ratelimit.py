"""Per-API-key rate limits: a token bucket in process, or a shared per-minute counter in Redis."""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol


class RateLimiter(Protocol):
    """Decides whether one more request of a key is allowed now; ``allow`` returns (allowed, retry_after_s)."""

    def allow(self, key_id: str) -> tuple[bool, int]:
        """Count one request of ``key_id``."""
        ...


class TokenBucketLimiter:
    """``per_minute`` requests per key and minute, bursts up to ``per_minute``, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key_id: str) -> tuple[bool, int]:
        """Take a token of ``key_id``'s bucket; when empty, say how long until the next one."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return True, 0
            self._buckets[key_id] = (tokens, now)
            return False, max(1, int((1.0 - tokens) / self.rate + 0.999))


class RedisWindowLimiter:
    """``per_minute`` requests per key in each clock minute, counted in Redis so every API process shares it."""

    def __init__(self, client: Any, per_minute: int) -> None:
        self.client = client
        self.per_minute = per_minute

    def allow(self, key_id: str) -> tuple[bool, int]:
        """Count the request in this minute's counter; refuse above the limit until the minute ends."""
        now = time.time()
        window = int(now // 60)
        key = f"drugrepo:rate:{key_id}:{window}"
        pipe = self.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        count = pipe.execute()[0]
        if count <= self.per_minute:
            return True, 0
        return False, max(1, int((window + 1) * 60 - now + 0.999))
