"""Deadlines for slow clients: a request's headers, then its body, must arrive in bounded time.

uvicorn times out only idle keep-alive connections: a client that connects and sends nothing, sends
a header line a byte at a time, or a 1 MB body a byte a minute holds its connection (and its
buffers) for as long as it likes. `with_deadlines` subclasses uvicorn's HTTP protocol (httptools,
else h11) with one timer per connection:

- headers: armed when the connection opens, and when the first bytes of a next request arrive;
  stopped when the request's headers are complete (uvicorn then starts its request cycle);
- body: armed then while the request has more body to come; stopped when the body is complete.

On expiry the client gets 408 (when no response is under way on the connection) and the connection
is closed. A deadline that ends while the server itself has paused reading (the app has not taken
the body yet, pipelined requests wait their turn) starts again: only the client's slowness counts.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

__all__ = ["BODY", "HEADERS", "with_deadlines"]

HEADERS = "headers"
BODY = "body"
SETTING = {HEADERS: "DRUGREPO_HEADER_TIMEOUT_SECONDS", BODY: "DRUGREPO_BODY_TIMEOUT_SECONDS"}


def timeout_response(phase: str, seconds: float) -> bytes:
    """The raw 408 answer for a request whose ``phase`` (headers or body) did not arrive in ``seconds``."""
    body = json.dumps({"detail": f"request {phase} not received within {seconds:g} s ({SETTING[phase]})"}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class _Deadlines(asyncio.Protocol):
    """The deadline timer over one of uvicorn's HTTP protocols (mixed in first; see `with_deadlines`)."""

    header_seconds: float
    body_seconds: float
    # Set by uvicorn's protocol: the loop, the transport, its flow control and the current request's cycle.
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    flow: Any
    cycle: Any

    _timer: asyncio.TimerHandle | None = None
    _phase: str = HEADERS
    _seen: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(HEADERS)

    def data_received(self, data: bytes) -> None:
        if self._timer is None:
            self._arm(HEADERS)  # the previous request is whole: these bytes begin the next one
        super().data_received(data)
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        super().connection_lost(exc)

    def _arm(self, phase: str) -> None:
        self._stop()
        self._phase = phase
        self._timer = self.loop.call_later(self._seconds(phase), self._expire)

    def _seconds(self, phase: str) -> float:
        return self.header_seconds if phase == HEADERS else self.body_seconds

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _follow(self) -> None:
        """After new data: a request whose headers completed since last seen gets the body deadline (while
        it has more body); a complete body stops it."""
        cycle = self.cycle
        if cycle is not self._seen:
            self._seen = cycle
            self._stop()
            if cycle is not None and cycle.more_body:
                self._arm(BODY)
        elif self._phase == BODY and cycle is not None and not cycle.more_body:
            self._stop()

    def _expire(self) -> None:
        phase, self._timer = self._phase, None
        if self.transport is None or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not self._seen or (phase == BODY and not cycle.more_body):
            self._follow()  # the request moved on without new data (a pipelined request started)
            return
        if self.flow.read_paused:
            self._arm(phase)  # the server is not reading: the wait is not the client's
            return
        if not self._answering(phase):
            self.transport.write(timeout_response(phase, self._seconds(phase)))
        self.transport.close()

    def _answering(self, phase: str) -> bool:
        """Whether a response is under way on the connection (a 408 would break into it)."""
        cycle = self.cycle
        if phase == HEADERS:  # the cycle is the previous request's, if any
            return cycle is not None and not cycle.response_complete
        return bool(cycle.response_started)


def with_deadlines(
    header_seconds: float, body_seconds: float, base: type[asyncio.Protocol] | None = None
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (``base``, default the one uvicorn picks: httptools, else h11) with the
    header and body deadlines; pass it as uvicorn's ``http``."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol
    attributes = {"header_seconds": header_seconds, "body_seconds": body_seconds, "__module__": __name__}
    return cast("type[asyncio.Protocol]", type(f"Deadline{base.__name__}", (_Deadlines, base), attributes))
