"""Slow clients against a real ``drugrepo serve`` on loopback: headers and bodies that never finish are cut off
after their deadlines (DRUGREPO_HEADER_TIMEOUT_SECONDS, DRUGREPO_BODY_TIMEOUT_SECONDS), /healthz answers
meanwhile, and a client that is merely not instant is served."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from drugrepo_assets.api.deadlines import with_deadlines
from drugrepo_assets.api.server import uvicorn_options
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets_tests.api.servers import Api, poll_until, running_api
from drugrepo_assets_tests.processes import free_port

KEY = "slow-key"
DEADLINE_S = 1.0
WAIT_BOUND_S = 60.0  # the outer bound of each wait on the server: generous, never the deadline under test
SLOW_CLIENTS = 60
ONE_MIB = 1024 * 1024


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> Iterator[Api]:
    """``drugrepo serve`` with 1-second header and body deadlines."""
    env = {
        "DRUGREPO_API_KEYS": KEY,
        "DRUGREPO_HEADER_TIMEOUT_SECONDS": str(DEADLINE_S),
        "DRUGREPO_BODY_TIMEOUT_SECONDS": str(DEADLINE_S),
    }
    with running_api(
        tmp_path_factory.mktemp("api-slow"), ["--checkpoint", str(golden_dir / "model_state.pt")], env
    ) as a:
        yield a


def _connect(api: Api, first_bytes: bytes) -> socket.socket:
    """A connection to the API that has sent ``first_bytes`` and then goes quiet."""
    host, port = api.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=WAIT_BOUND_S)
    sock.sendall(first_bytes)
    return sock


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (blocks at most WAIT_BOUND_S per read)."""
    received = b""
    for _ in range(1024):  # bounded: a 408 is a few hundred bytes
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk
    pytest.fail(f"the server kept sending: {received[:200]!r}")


def _one_response(sock: socket.socket) -> bytes:
    """One complete HTTP response read from ``sock``: the head, then Content-Length bytes of body (the server may
    send them in separate writes, so one recv is not one response)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed mid-response: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed mid-body: {received!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def _half_header() -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaa"


def _post_head(size: int) -> bytes:
    """The complete headers of a POST to /v1/predict announcing ``size`` bytes of JSON body (the server closes after)."""
    return (
        f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode()


def _slow_body_head(size: int = ONE_MIB) -> bytes:
    """A POST announcing ``size`` bytes of body, its headers complete, then the first KiB of body."""
    return _post_head(size) + b'{"pairs": [' + b" " * 1013


def test_a_client_that_never_finishes_its_headers_gets_408_and_is_closed(api: Api) -> None:
    with _connect(api, _half_header()) as sock:
        answer = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"request headers not received within 1 s (DRUGREPO_HEADER_TIMEOUT_SECONDS)" in answer


def test_a_client_that_connects_and_sends_nothing_is_closed(api: Api) -> None:
    with _connect(api, b"") as sock:
        answer = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_a_client_that_never_finishes_its_body_gets_408_and_is_closed(api: Api) -> None:
    with _connect(api, _slow_body_head()) as sock:
        answer = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"request body not received within 1 s (DRUGREPO_BODY_TIMEOUT_SECONDS)" in answer


def test_healthz_answers_while_slow_clients_hold_connections_and_each_is_closed(api: Api) -> None:
    with ExitStack() as stack:
        slow = [
            stack.enter_context(_connect(api, _half_header() if i % 2 else _slow_body_head()))
            for i in range(SLOW_CLIENTS)
        ]
        health = requests.get(f"{api.url}/healthz", timeout=WAIT_BOUND_S)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        answers = [_until_closed(sock) for sock in slow]
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), {a[:40] for a in answers}
    assert requests.get(f"{api.url}/healthz", timeout=WAIT_BOUND_S).status_code == 200


def test_a_request_sent_in_pieces_and_a_second_one_on_the_same_connection_are_served(api: Api) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with _connect(api, request[:10]) as sock:
        sock.sendall(request[10:])
        first = _one_response(sock)
        sock.sendall(request)
        second = _one_response(sock)
    assert first.startswith(b"HTTP/1.1 200 ") and second.startswith(b"HTTP/1.1 200 "), (first, second)
    assert first.endswith(b'{"status":"ok"}') and second.endswith(b'{"status":"ok"}'), (first, second)


def test_a_body_sent_in_pieces_within_the_deadline_is_answered(api: Api) -> None:
    body = json.dumps({"pairs": [{"smiles": "CC(=O)Oc1ccccc1C(=O)O", "protein": "MKTAYIAKQRQISFVKSHFSRQ"}]}).encode()
    with _connect(api, _post_head(len(body))) as sock:
        sock.sendall(body[:20])
        sock.sendall(body[20:])
        answer = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:500]
    assert b'"predictions"' in answer


def test_uvicorn_gets_the_deadlines_and_the_connection_limit_from_the_settings() -> None:
    options = uvicorn_options(ServingSettings(header_timeout_seconds=3, body_timeout_seconds=7, max_connections=50))
    assert options["limit_concurrency"] == 50 and options["ws"] == "none"
    protocol = options["http"]
    assert (protocol.header_seconds, protocol.body_seconds) == (3, 7)  # type: ignore[attr-defined]
    assert with_deadlines(1, 2).__name__.startswith("Deadline")


async def _echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A minimal ASGI app: reads the whole body, answers 200 with its length."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size, more = size + len(message.get("body", b"")), message.get("more_body", False)
    answer = str(size).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@contextmanager
def _uvicorn_in_thread(protocol: type[asyncio.Protocol]) -> Iterator[Api]:
    """uvicorn on a free loopback port in a thread with ``protocol`` (yields once it listens; stopped after)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_echo_length, host="127.0.0.1", port=port, http=protocol, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        poll_until(lambda: server.started, "uvicorn to listen", timeout=WAIT_BOUND_S)
        yield Api(f"http://127.0.0.1:{port}", Path(), Path())
    finally:
        server.should_exit = True
        thread.join(WAIT_BOUND_S)


@pytest.mark.parametrize("base", [H11Protocol, HttpToolsProtocol], ids=["h11", "httptools"])
def test_both_of_uvicorns_http_protocols_get_the_deadlines(base: type[asyncio.Protocol]) -> None:
    with _uvicorn_in_thread(with_deadlines(DEADLINE_S, DEADLINE_S, base)) as server:
        with _connect(server, _half_header()) as sock:
            assert _until_closed(sock).startswith(b"HTTP/1.1 408 ")
        with _connect(server, _slow_body_head(size=4096)) as sock:
            assert _until_closed(sock).startswith(b"HTTP/1.1 408 ")
        body = b"x" * 4096
        with _connect(server, _post_head(len(body))) as sock:
            sock.sendall(body[:100])
            sock.sendall(body[100:])
            answer = _until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n4096"), answer
