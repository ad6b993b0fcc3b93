"""Helpers for tests that start real server processes on loopback: a free port, waiting for readiness, stopping."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    process: subprocess.Popen, ready: Callable[[], bool], log: Path, what: str, timeout: float = 120
) -> None:
    """Poll ``ready`` until it holds; fail with the end of ``log`` if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{what} did not start:\n{log.read_text()[-4000:]}", pytrace=False)
        time.sleep(0.2)


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate, then kill if it does not exit in ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
