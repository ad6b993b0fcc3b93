"""ASGI middleware in front of /v1/: per-address rate limit (429), API key (401), per-key rate limit
(429), body size (413), metrics.

Pure ASGI so that it answers before FastAPI reads or parses a body: a flood from one address is
refused before any key check, a request without a valid key is refused the same way whatever it
carries, and an oversized body is never parsed. A limiter that may wait on Redis runs on a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from drugrepo_assets.api.metrics import ApiMetrics
from drugrepo_assets.api.ratelimit import Decision, RateLimiter

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PROTECTED_PREFIX = "/v1/"
KNOWN_ROUTES = ("/v1/predict", "/v1/screen", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")


def key_id(key: str) -> str:
    """A stable, non-reversible id of an API key for logs and limits (SHA-256, 12 hex digits)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def matching_key(given: str, keys: Sequence[str]) -> bool:
    """Whether ``given`` is one of ``keys``, comparing every key in constant time."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(given.encode(), key.encode())
    return found


async def _json(send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _refuse(send: Send, detail: str, decision: Decision) -> None:
    await _json(
        send,
        429,
        {"detail": detail, "retry_after_seconds": decision.retry_after},
        [(b"retry-after", str(decision.retry_after).encode())],
    )


class GuardMiddleware:
    """Authenticates, rate-limits and size-limits /v1/ requests; times and counts every request."""

    def __init__(
        self,
        app: Any,
        keys: Sequence[str],
        limiter: RateLimiter,
        ip_limiter: RateLimiter,
        max_body_bytes: int,
        metrics: ApiMetrics,
    ) -> None:
        self.app = app
        self.keys = list(keys)
        self.limiter = limiter
        self.ip_limiter = ip_limiter
        self.max_body = max_body_bytes
        self.metrics = metrics

    @staticmethod
    async def _allow(limiter: RateLimiter, key: str) -> Decision:
        if limiter.blocking:
            return await asyncio.to_thread(limiter.allow, key, 1.0)
        return limiter.allow(key, 1.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in KNOWN_ROUTES else "other"
        status_seen = {"status": 500}

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_seen["status"] = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            if path.startswith(PROTECTED_PREFIX):
                await self._guarded(scope, receive, counting_send)
            else:
                await self.app(scope, receive, counting_send)
        finally:
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            self.metrics.requests.labels(route, str(status_seen["status"])).inc()

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-api-key", b"").decode("latin-1")
        if not given or not matching_key(given, self.keys):
            # Only requests without a valid key are counted per address: clients with keys are limited per
            # key, and may share one address (every request arriving through an ingress or a NAT does).
            client = scope.get("client")
            decision = await self._allow(self.ip_limiter, client[0] if client else "unknown")
            if not decision.allowed:
                self.metrics.rate_limited.labels("ip").inc()
                await _refuse(
                    send,
                    "rate limit exceeded for unauthenticated requests of this client address "
                    "(DRUGREPO_IP_RATE_LIMIT_PER_MINUTE)",
                    decision,
                )
                return
            await _json(
                send,
                401,
                {"detail": "missing or invalid API key (header X-API-Key)"},
                [(b"www-authenticate", b"X-API-Key")],
            )
            return
        kid = key_id(given)
        decision = await self._allow(self.limiter, kid)
        if not decision.allowed:
            self.metrics.rate_limited.labels("key").inc()
            await _refuse(send, "rate limit exceeded for this API key (DRUGREPO_RATE_LIMIT_PER_MINUTE)", decision)
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _json(send, 413, {"detail": f"request body over {self.max_body} bytes"})
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _json(send, 413, {"detail": f"request body over {self.max_body} bytes"})
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        scope.setdefault("state", {})["key_id"] = kid
        await self.app(scope, replay, send)
