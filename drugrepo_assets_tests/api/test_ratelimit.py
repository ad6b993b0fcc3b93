"""Rate limits: GCRA with one semantics in process and in Redis (a real redis-server), driven by an
injected clock (no wall-clock dependence); Redis failing falls back in process; on a live server, the
per-key limit, the cost of a request's work, and the per-address limit before any key check."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from drugrepo_assets.api.metrics import ApiMetrics
from drugrepo_assets.api.ratelimit import Decision, GcraLimiter, RedisGcraLimiter
from drugrepo_assets.api.redislink import RedisLink, connect
from drugrepo_assets_tests.api.servers import Api, RedisServer, metric_value, redis_server, running_api

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


class ManualClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def redis_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A throwaway redis-server."""
    with redis_server(tmp_path_factory.mktemp("redis-rate")) as server:
        yield server


def test_gcra_admits_a_burst_then_one_per_interval_with_retry_after() -> None:
    clock = ManualClock()
    limiter = GcraLimiter(per_minute=60, burst=5, clock=clock)  # one unit a second
    assert [limiter.allow("k").allowed for _ in range(5)] == [True] * 5
    assert limiter.allow("k") == Decision(False, 1)
    assert limiter.allow("other").allowed  # keys are independent
    clock.advance(0.5)
    assert limiter.allow("k") == Decision(False, 1)  # half an interval: still refused, and refusals cost nothing
    clock.advance(0.5)
    assert limiter.allow("k").allowed
    assert not limiter.allow("k").allowed
    clock.advance(60)
    assert [limiter.allow("k").allowed for _ in range(6)] == [True] * 5 + [False]  # a full burst again, never more


def test_gcra_charges_a_costly_request_in_full_and_the_key_waits_for_it() -> None:
    clock = ManualClock()
    limiter = GcraLimiter(per_minute=60, burst=5, clock=clock)
    assert limiter.allow("k", cost=30).allowed  # more than the burst: admitted while the key owes nothing
    decision = limiter.allow("k")
    assert not decision.allowed and decision.retry_after == 26  # 30 s of debt less the 4 s of tolerance
    clock.advance(25.5)
    assert not limiter.allow("k").allowed
    clock.advance(0.5)
    assert limiter.allow("k").allowed


def _decisions(
    limiter: GcraLimiter | RedisGcraLimiter, clock: ManualClock, script: list[tuple[float, str, float]]
) -> list[Decision]:
    out = []
    for step, key, cost in script:
        clock.advance(step)
        out.append(limiter.allow(key, cost))
    return out


def test_redis_and_in_process_limiters_decide_alike(redis_srv: RedisServer) -> None:
    rng = random.Random(7)
    script = [
        (rng.choice([0.0, 0.0, 0.05, 0.3, 1.0, 2.5]), rng.choice("ab"), rng.choice([1, 1, 1, 3, 12]))
        for _ in range(400)
    ]
    memory_clock, redis_clock = ManualClock(), ManualClock()
    memory = GcraLimiter(per_minute=90, burst=8, clock=memory_clock)
    link = RedisLink(connect(redis_srv.url, 2.0), retry_seconds=5, metrics=ApiMetrics())
    shared = RedisGcraLimiter(link, per_minute=90, burst=8, clock=redis_clock, prefix=f"test:{rng.random()}")
    expected = _decisions(memory, memory_clock, script)
    got = _decisions(shared, redis_clock, script)
    assert got == expected
    assert 0 < sum(d.allowed for d in got) < len(got)  # the script crosses the limit both ways
    keys = redis.Redis.from_url(redis_srv.url).keys(f"{shared.prefix}:*")
    assert sorted(k.decode().rsplit(":", 1)[1] for k in keys) == ["a", "b"]


def test_redis_limiter_falls_back_in_process_when_redis_is_gone(tmp_path: Path) -> None:
    clock, metrics = ManualClock(), ApiMetrics()
    with redis_server(tmp_path / "redis") as server:
        link = RedisLink(connect(server.url, 0.25), retry_seconds=30, metrics=metrics, clock=clock)
        limiter = RedisGcraLimiter(link, per_minute=60, burst=2, clock=clock)
        assert limiter.allow("k").allowed and limiter.blocking
        server.process.kill()
        server.process.wait()
        assert [limiter.allow("k").allowed for _ in range(3)] == [True, True, False]  # the fallback's own burst
        assert not limiter.blocking and not link.usable()
        assert metrics.degraded._value.get() == 1
        assert metric_value(metrics.render().decode(), "drugrepo_redis_errors_total", {"op": "ratelimit"}) == 1
        clock.advance(31)
        assert link.usable()  # tried again after redis_retry_seconds


KEY_A, KEY_B, KEY_C = "rate-a", "rate-b", "rate-c"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> Iterator[Api]:
    """Per key 5 units at once then one an hour; a protein costs 10; per address 3 unauthenticated requests at once then one an hour."""
    env = {
        "DRUGREPO_API_KEYS": f"{KEY_A},{KEY_B},{KEY_C}",
        "DRUGREPO_RATE_LIMIT_PER_MINUTE": str(1 / 60),
        "DRUGREPO_RATE_LIMIT_BURST": "5",
        "DRUGREPO_PROTEIN_COST": "10",
        "DRUGREPO_IP_RATE_LIMIT_PER_MINUTE": str(1 / 60),
        "DRUGREPO_IP_RATE_LIMIT_BURST": "3",
    }
    with running_api(
        tmp_path_factory.mktemp("api-rate"), ["--checkpoint", str(golden_dir / "model_state.pt")], env
    ) as running:
        yield running


def _post(api: Api, body: object, key: str | None) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return httpx.post(api.url + "/v1/predict", json=body, headers=headers, timeout=60)


def test_live_limits_per_key_by_cost_and_unauthenticated_requests_per_address(api: Api) -> None:
    statuses = [_post(api, {"pairs": []}, KEY_A).status_code for _ in range(7)]
    assert statuses == [422] * 5 + [429] * 2  # an invalid body costs its arrival only
    limited = _post(api, {"pairs": []}, KEY_A)  # 8
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 3000
    assert "DRUGREPO_RATE_LIMIT_PER_MINUTE" in limited.json()["detail"]
    assert _post(api, {"pairs": []}, KEY_B).status_code == 422  # 9: another key is not limited
    costly = {"pairs": [{"smiles": ASPIRIN, "protein": "MKTAYIAKQR"}, {"smiles": "CCO", "protein": "MKTAYIAKQR"}]}
    assert _post(api, costly, KEY_C).status_code == 200  # 10: costs 1 + 2 pairs + 10 for the protein
    after = _post(api, {"pairs": []}, KEY_C)  # 11
    assert after.status_code == 429  # it owes 14 units (3600 s each), 4 of them tolerated
    assert 32400 - 600 < int(after.headers["retry-after"]) <= 32400
    assert [_post(api, {"pairs": []}, None).status_code for _ in range(5)] == [401] * 3 + [429] * 2
    flooded = _post(api, {"pairs": []}, "not-a-key")  # a wrong key is as unauthenticated as none
    assert flooded.status_code == 429 and "client address" in flooded.json()["detail"]
    # A valid key is limited per key only: its clients may share one address (an ingress, a NAT).
    assert _post(api, {"pairs": []}, KEY_B).status_code == 422
    assert httpx.get(api.url + "/healthz").status_code == 200  # probes are not limited
    text = httpx.get(api.url + "/metrics").text
    assert metric_value(text, "drugrepo_rate_limited_total", {"limit": "ip"}) == 3
    assert metric_value(text, "drugrepo_rate_limited_total", {"limit": "key"}) == 4
