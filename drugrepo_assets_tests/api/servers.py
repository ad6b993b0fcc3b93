"""Real processes on loopback for the serving tests: the API (``drugrepo serve``), redis-server, mlflow server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from drugrepo_assets_tests.processes import free_port, stop, wait_until

BIN = Path(sys.executable).parent


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Api:
    """A running ``drugrepo serve``: base URL, its request-log folder, its log file and process id."""

    url: str
    request_log: Path
    log: Path
    pid: int = 0


@contextmanager
def running_api(folder: Path, args: Sequence[str], env: dict[str, str]) -> Iterator[Api]:
    """``drugrepo serve ARGS`` on a free port with ``env`` added; yields once /readyz answers 200."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DRUGREPO_")}
    environ |= {"DRUGREPO_REQUEST_LOG_DIR": str(folder / "requests"), **env}
    log = folder / f"api-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN / "drugrepo"), "serve", *args, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environ,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(process, lambda: _http_ok(f"{url}/readyz"), log, "drugrepo serve")
        yield Api(url, folder / "requests", log, process.pid)
    finally:
        stop(process)


@dataclass
class RedisServer:
    """A running redis-server: its redis:// URL and process (tests freeze and kill it)."""

    url: str
    process: subprocess.Popen


@contextmanager
def redis_server(folder: Path, *args: str) -> Iterator[RedisServer]:
    """A throwaway ``redis-server`` (no persistence, extra ``args``) on a free port, once it answers PING."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found: install Debian's redis-server (make test does)", pytrace=False)
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "redis.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"redis://127.0.0.1:{port}/0"

    def ready() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
        except redis.RedisError:
            return False

    try:
        wait_until(process, ready, log, "redis-server", timeout=30)
        yield RedisServer(url, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a frozen server must run to exit
        stop(process)


@contextmanager
def running_redis(folder: Path) -> Iterator[str]:
    """A throwaway ``redis-server`` (no persistence) on a free port; yields its redis:// URL."""
    with redis_server(folder) as server:
        yield server.url


@contextmanager
def running_mlflow(folder: Path) -> Iterator[str]:
    """A real ``mlflow server`` with a SQLite store in ``folder``; yields its base URL once /health answers.

    The server runs as the project uses it, for tracking and the model registry: without MLflow 3's job execution
    (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION``, GenAI jobs no code here submits), which would start seven huey consumer
    processes and a job runner beside it, about 28 s of CPU per server start on this machine."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "mlflow.log"
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--default-artifact-root",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(process, lambda: _http_ok(f"{url}/health"), log, "mlflow server")
        yield url
    finally:
        stop(process)


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` now (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for process {pid}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (the server and its molecule workers), from /proc's children lists."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except OSError:  # a thread or process that ended meanwhile
                continue
    return found


def pss_bytes(pid: int) -> int:
    """Proportional resident memory of process ``pid`` now (Pss of /proc/<pid>/smaps_rollup): a page shared
    with N processes counts 1/N, so a sum over processes counts it once."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no Pss for process {pid}")


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants now, each page once (`pss_bytes`: a worker between its fork
    and its exec shares the server's pages); a process that ends meanwhile counts 0."""
    total = 0
    for member in process_tree(pid):
        try:
            total += pss_bytes(member)
        except (OSError, ValueError):
            continue
    return total


HEALTH_BOUND_S = 0.050
"""The server's share of one /healthz poll may not reach this (`HealthPolls.stalled`)."""

# Polls /healthz (one keep-alive connection; "ready" once connected) until the stop file exists and it has
# polled at least the given number of times, at most 20,000 times; then prints, as JSON, each poll's latency,
# status and the run-queue wait (kernel schedstat) of the server's threads and of the poller's thread during
# it, and the largest memory of the server's process tree (the server and its molecule workers) seen.
POLLER = r"""
import json, os, sys, threading, time, httpx
sys.path[:0] = [sys.argv[4]]
from drugrepo_assets_tests.api.servers import tree_rss_bytes
url, pid, stop, least = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[5])
own_thread = f"/proc/self/task/{threading.get_native_id()}/schedstat"
def queued():
    total = 0
    for path in [f"/proc/{pid}/task/{t}/schedstat" for t in os.listdir(f"/proc/{pid}/task")] + [own_thread]:
        try:
            with open(path) as f:
                total += int(f.read().split()[1])
        except OSError:  # a thread that ended meanwhile
            pass
    return total / 1e9
polls, peak = [], 0
with httpx.Client(timeout=10) as client:
    client.get(url + "/healthz")
    print("ready", flush=True)
    while (len(polls) < least or not os.path.exists(stop)) and len(polls) < 20000:
        waited, start = queued(), time.perf_counter()
        status = client.get(url + "/healthz").status_code
        polls.append((time.perf_counter() - start, status, queued() - waited))
        peak = max(peak, tree_rss_bytes(pid))
        time.sleep(0.002)
print(json.dumps({"polls": polls, "peak_rss": peak}))
"""


@dataclass
class HealthPolls:
    """What a `polling_health` poller saw: each poll's (seconds, status, seconds its threads waited for a CPU),
    and the largest RSS of the server's process tree."""

    polls: list[tuple[float, int, float]]
    peak_rss: int

    def stalled(self, bound: float = HEALTH_BOUND_S) -> list[tuple[float, float]]:
        """(server's share, raw) milliseconds of the polls whose server's share reached ``bound``, slowest first.

        The server's share of a poll is its latency less the time the kernel kept the server's threads and the
        poller's thread waiting for a CPU during it (their schedstat run-queue wait): on a loaded 2-core machine
        an idle server's polls already take 100+ ms at times. A thread that holds the GIL or keeps the event loop
        busy is running, not queueing, so a server that stalls its loop still counts.
        """
        return sorted(
            (
                (round(1000 * (seconds - queued), 1), round(1000 * seconds, 1))
                for seconds, _, queued in self.polls
                if seconds - queued >= bound
            ),
            reverse=True,
        )


@contextmanager
def polling_health(api: Api, folder: Path, at_least: int = 20) -> Iterator[list[HealthPolls]]:
    """Poll the API's /healthz from another process while the block runs, and ``at_least`` times in all (a fast
    machine may finish the block's work within a few polls); the yielded list then holds the report."""
    stop = folder / f"stop-polling-{free_port()}"
    root = str(Path(__file__).parents[2])
    process = subprocess.Popen(
        [sys.executable, "-c", POLLER, api.url, str(api.pid), str(stop), root, str(at_least)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    report: list[HealthPolls] = []
    try:
        yield report
    finally:
        stop.touch()
        out, _ = process.communicate(timeout=60)
    found = json.loads(out)
    report.append(HealthPolls([tuple(p) for p in found["polls"]], found["peak_rss"]))


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The value of one sample of a Prometheus exposition (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
    return 0.0


def poll_until(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Poll ``condition`` until it holds; fail after a generous deadline (a wait on a condition, never a timed assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def challenger_checkpoint(golden: Path, out: Path) -> str:
    """A second model: the golden weights with the classifier's last bias raised by 1 (every logit +1), saved with
    `save_checkpoint` at ``out``; returns its checkpoint id."""
    import torch

    from drugrepo_assets.ml.model.checkpoint import checkpoint_id, load_checkpoint, save_checkpoint

    model = load_checkpoint(str(golden)).model
    last_bias = [name for name, _ in model.named_parameters() if name.endswith(".bias")][-1]
    with torch.no_grad():
        model.get_parameter(last_bias).add_(1.0)
    save_checkpoint(str(out), model)
    return checkpoint_id(model)
