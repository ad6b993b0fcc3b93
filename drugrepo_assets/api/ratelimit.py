"""Rate limits with one semantics in process and in Redis: GCRA (the generic cell rate algorithm).

A limit is ``per_minute`` cost units with a ``burst``. Each key has a theoretical arrival time (TAT):
the moment its spending so far would be paid off at the steady rate. A request is admitted while
``TAT - now`` is at most ``(burst - 1)`` units' worth of time, and its cost then moves the TAT on
(``cost * 60 / per_minute`` seconds): a key can spend ``burst`` unit-cost requests at once, then one
per interval; a costly request is admitted when the key is not in debt and makes it wait in
proportion. Refusals say how long until the next request is admitted (Retry-After).

Both limiters take the clock as a callable, so tests drive time; the Redis one runs the same
arithmetic in one Lua script with ``now`` from that clock (wall time by default: every API process
shares the key), and falls back to the in-process limiter while Redis is unavailable.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from drugrepo_assets.api.redislink import RedisLink, RedisUnavailable

Clock = Callable[[], float]


@dataclass(frozen=True)
class Decision:
    """Whether a request is admitted and, when not, the whole seconds to wait before retrying."""

    allowed: bool
    retry_after: int


class RateLimiter(Protocol):
    """Admits or refuses a cost for a key; ``blocking`` says whether ``allow`` may wait on the network."""

    @property
    def blocking(self) -> bool:
        """Whether ``allow`` may wait on the network now."""
        ...

    def allow(self, key: str, cost: float = 1.0) -> Decision:
        """Charge ``cost`` to ``key`` if admitted now."""
        ...


def _retry_after(wait: float) -> int:
    return max(1, math.ceil(wait - 1e-9))


class GcraLimiter:
    """GCRA in process (thread-safe): ``per_minute`` units per key, ``burst`` units at once."""

    blocking = False

    def __init__(self, per_minute: float, burst: float, clock: Clock = time.monotonic, max_keys: int = 100_000) -> None:
        self.interval = 60.0 / per_minute
        self.tolerance = (burst - 1.0) * self.interval
        self.clock = clock
        self.max_keys = max_keys
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, cost: float = 1.0) -> Decision:
        """Admit and charge ``cost`` when ``key``'s debt allows it now; else say how long to wait."""
        now = self.clock()
        with self._lock:
            tat = max(self._tat.get(key, now), now)
            wait = tat - self.tolerance - now
            if wait > 0:
                return Decision(False, _retry_after(wait))
            self._tat[key] = tat + cost * self.interval
            if len(self._tat) > self.max_keys:
                self._tat = {k: t for k, t in self._tat.items() if t > now}  # paid-off keys equal fresh ones
        return Decision(True, 0)


# KEYS[1]: the key's TAT; ARGV: now, interval (s per unit), tolerance (s), cost. Returns {allowed, wait}.
GCRA_SCRIPT = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return {0, tostring(wait)} end
local new_tat = tat + cost * interval
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, '0'}
"""


class RedisGcraLimiter:
    """GCRA in Redis, shared by every API process; the in-process `GcraLimiter` while Redis is unavailable."""

    def __init__(
        self, link: RedisLink, per_minute: float, burst: float, clock: Clock = time.time, prefix: str = "drugrepo:gcra"
    ) -> None:
        self.link = link
        self.clock = clock
        self.prefix = prefix
        self.fallback = GcraLimiter(per_minute, burst, clock)
        self.interval = self.fallback.interval
        self.tolerance = self.fallback.tolerance
        self._script = link.client.register_script(GCRA_SCRIPT)

    @property
    def blocking(self) -> bool:
        """True while Redis is in use (a call may wait up to the socket timeout)."""
        return self.link.usable()

    def allow(self, key: str, cost: float = 1.0) -> Decision:
        """Charge ``cost`` in Redis (one script, atomic); in process when Redis fails."""
        now = self.clock()
        args = [repr(now), repr(self.interval), repr(self.tolerance), repr(float(cost))]
        try:
            allowed, wait = self.link.call(
                "ratelimit", lambda c: self._script(keys=[f"{self.prefix}:{key}"], args=args, client=c)
            )
        except RedisUnavailable:
            return self.fallback.allow(key, cost)
        return Decision(True, 0) if int(allowed) == 1 else Decision(False, _retry_after(float(wait)))
