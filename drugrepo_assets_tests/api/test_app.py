"""The app in process (ASGI, its lifespan run, the golden checkpoint): a full pool answers 503 with
Retry-After while /healthz answers; a job counts until its thread ends even when its client left;
an unexpected failure (a model whose weights are NaN) answers a JSON 500 without internals, logged."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import torch

from drugrepo_assets.api.app import create_app
from drugrepo_assets.api.model_service import load_served_model
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.api.workpool import PoolBusy, WorkPool

KEY = "in-process-key"
PAIR = {"pairs": [{"smiles": "CC(=O)Oc1ccccc1C(=O)O", "protein": "MKTAYIAKQR"}]}


def _settings(golden_dir: Path, tmp_path: Path) -> ServingSettings:
    return ServingSettings(
        api_keys=KEY,
        checkpoint=str(golden_dir / "model_state.pt"),
        workers=1,
        max_queued=1,
        request_log_dir=str(tmp_path / "requests"),
        model_refresh_seconds=0,
    )


async def _filled(pool: WorkPool, gate: threading.Event) -> list[asyncio.Future]:
    """Fill every place of ``pool`` with jobs that wait for ``gate``."""
    jobs = [asyncio.ensure_future(pool.run(gate.wait, 60)) for _ in range(pool.capacity)]
    while pool.in_pool < pool.capacity:
        await asyncio.sleep(0)
    return jobs


def test_work_pool_refuses_beyond_its_places_and_counts_jobs_until_their_thread_ends() -> None:
    async def scenario() -> None:
        pool = WorkPool(workers=1, max_queued=2)
        gate = threading.Event()
        jobs = await _filled(pool, gate)
        assert pool.capacity == 3
        with pytest.raises(PoolBusy):
            await pool.run(len, "x")
        jobs[0].cancel()  # its client went away: the thread still runs it, so it still counts
        await asyncio.sleep(0)
        assert pool.in_pool == 3
        gate.set()
        assert await asyncio.gather(*jobs[1:]) == [True, True]
        while pool.in_pool:
            await asyncio.sleep(0.01)
        assert await pool.run(len, "abc") == 3
        pool.close()

    asyncio.run(scenario())


def test_a_full_pool_answers_503_with_retry_after_and_health_still_answers(golden_dir: Path, tmp_path: Path) -> None:
    app = create_app(_settings(golden_dir, tmp_path))

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response, httpx.Response]:
        async with app.router.lifespan_context(app):
            gate = threading.Event()
            jobs = await _filled(app.state.pool, gate)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
                busy = await client.post("/v1/predict", json=PAIR, headers={"X-API-Key": KEY})
                health = await client.get("/healthz")
                ready = await client.get("/readyz")
                gate.set()
                await asyncio.gather(*jobs)
                scored = await client.post("/v1/predict", json=PAIR, headers={"X-API-Key": KEY})
            return busy, health, ready, scored

    busy, health, ready, scored = asyncio.run(scenario())
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert "DRUGREPO_WORKERS" in busy.json()["detail"] and busy.json()["retry_after_seconds"] == 1
    assert health.json() == {"status": "ok"}
    assert ready.json()["pool"] == {"in_pool": 2, "capacity": 2}
    assert scored.status_code == 200


def test_an_unexpected_failure_is_a_json_500_without_internals_and_logged(
    golden_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(golden_dir, tmp_path)
    served = load_served_model(settings)
    with torch.no_grad():
        for parameter in served.model.parameters():
            parameter.fill_(float("nan"))  # a corrupted model: logits are NaN, which JSON cannot carry
    app = create_app(settings, served)

    async def scenario() -> httpx.Response:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
        ):
            return await client.post("/v1/predict", json=PAIR, headers={"X-API-Key": KEY})

    with caplog.at_level(logging.ERROR, logger="drugrepo_assets.api.handlers"):
        response = asyncio.run(scenario())
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error (logged by the server)"}
    assert "Traceback" not in response.text and "ValueError" not in response.text
    [record] = [r for r in caplog.records if r.message == "request failed"]
    assert record.exc_info is not None and "JSON compliant" in str(record.exc_info[1])


def test_a_request_log_that_cannot_write_is_shown_by_readyz_and_metrics_then_recovers(
    golden_dir: Path, tmp_path: Path
) -> None:
    """The log's folder replaced by a file: requests are still answered, /readyz says degraded with the
    failure, the metric counts it; the folder back, the writer recovers (it never died)."""
    import shutil

    settings = _settings(golden_dir, tmp_path)
    folder = Path(settings.request_log_dir)

    async def until(client: httpx.AsyncClient, holds: Callable[[dict], bool]) -> dict:
        for _ in range(6000):  # a condition waited on (the writer's retries back off), not a speed
            ready = (await client.get("/readyz")).json()
            if holds(ready):
                return ready
            await asyncio.sleep(0.01)
        raise AssertionError(f"/readyz never showed it: {ready}")

    async def scenario() -> tuple[dict, str, dict]:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
        ):
            shutil.rmtree(folder, ignore_errors=True)
            folder.write_text("not a folder")
            assert (await client.post("/v1/predict", json=PAIR, headers={"X-API-Key": KEY})).status_code == 200
            failing = await until(client, lambda r: r["request_log"]["write_failures"] >= 1)
            metrics = (await client.get("/metrics")).text
            folder.unlink()
            assert (await client.post("/v1/predict", json=PAIR, headers={"X-API-Key": KEY})).status_code == 200
            recovered = await until(client, lambda r: r["request_log"]["healthy"] and r["status"] == "ready")
            return failing, metrics, recovered

    app = create_app(settings)
    failing, metrics, recovered = asyncio.run(scenario())
    assert failing["status"] == "degraded" and failing["request_log"]["healthy"] is False
    assert failing["request_log"]["last_error"]
    [failures] = [line for line in metrics.splitlines() if line.startswith("drugrepo_request_log_write_failures_total")]
    assert float(failures.split()[-1]) >= 1
    assert recovered["request_log"]["write_failures"] >= 1
    assert any(folder.glob("requests-*.jsonl"))
