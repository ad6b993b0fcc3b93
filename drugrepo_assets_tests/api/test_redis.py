"""The API with Redis (a real redis-server started here): target terms cached in Redis and shared by
two API processes, rate limits counted in Redis (GCRA, shared too), a full Redis (maxmemory,
noeviction) leaving terms uncached but requests scored."""

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
import torch

from drugrepo_assets.api.cache import LruTargetCache, RedisTargetCache, dump_terms
from drugrepo_assets.api.guard import key_id
from drugrepo_assets.api.metrics import ApiMetrics
from drugrepo_assets.api.redislink import RedisLink
from drugrepo_assets.screening.engine import TargetTerms
from drugrepo_assets_tests.api.servers import Api, metric_value, running_api, running_redis

KEY = "redis-key"
LIMITED = "redis-limited"
LIMIT = 20
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
PROTEIN = "MGSSHHHHHHSSGLVPRGSHMASMTGGQQMGRGSEFELRRQACGRTRAPPPPPLRSGC"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server."""
    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


def _serve(folder: Path, golden_dir: Path, redis_url: str):
    """Per key a burst of 20 units and then one an hour (a pair costs 1 more, a protein nothing)."""
    env = {
        "DRUGREPO_API_KEYS": f"{KEY},{LIMITED}",
        "DRUGREPO_REDIS_URL": redis_url,
        "DRUGREPO_RATE_LIMIT_PER_MINUTE": str(1 / 60),
        "DRUGREPO_RATE_LIMIT_BURST": str(LIMIT),
        "DRUGREPO_PROTEIN_COST": "0",
    }
    return running_api(folder, ["--checkpoint", str(golden_dir / "model_state.pt")], env)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path, redis_url: str) -> Iterator[Api]:
    """``drugrepo serve`` with DRUGREPO_REDIS_URL."""
    with _serve(tmp_path_factory.mktemp("api-redis"), golden_dir, redis_url) as running:
        yield running


def _predict(api: Api, smiles: str, key: str = KEY, protein: str = PROTEIN) -> httpx.Response:
    return httpx.post(
        api.url + "/v1/predict",
        json={"pairs": [{"smiles": smiles, "protein": protein}]},
        headers={"X-API-Key": key},
        timeout=60,
    )


def test_target_terms_are_cached_in_redis_and_shared_between_processes(
    api: Api, redis_url: str, golden_dir: Path, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    assert httpx.get(api.url + "/readyz").json()["cache"] == "redis"
    assert client.keys("drugrepo:target:*") == []
    first = _predict(api, ASPIRIN).json()["predictions"][0]["logit"]
    keys = client.keys("drugrepo:target:*")
    assert len(keys) == 1 and 0 < client.ttl(keys[0]) <= 7 * 24 * 3600
    assert len(client.get(keys[0])) > 768 * 768 * 4
    second = _predict(api, "CCO").json()["predictions"][0]["logit"]
    again = _predict(api, ASPIRIN).json()["predictions"][0]["logit"]
    assert again == first and second != first
    text = httpx.get(api.url + "/metrics").text
    assert metric_value(text, "drugrepo_target_cache_total", {"result": "miss", "backend": "redis"}) == 1
    assert metric_value(text, "drugrepo_target_cache_total", {"result": "hit", "backend": "redis"}) == 2
    with _serve(tmp_path / "second", golden_dir, redis_url) as other:
        shared = _predict(other, ASPIRIN).json()["predictions"][0]["logit"]
        text = httpx.get(other.url + "/metrics").text
    np.testing.assert_allclose(shared, first, atol=1e-6)
    assert metric_value(text, "drugrepo_target_cache_total", {"result": "hit", "backend": "redis"}) == 1
    assert metric_value(text, "drugrepo_target_cache_total", {"result": "miss", "backend": "redis"}) == 0
    assert len(client.keys("drugrepo:target:*")) == 1


def test_rate_limit_is_counted_in_redis_and_shared(api: Api, redis_url: str, golden_dir: Path, tmp_path: Path) -> None:
    statuses = [
        httpx.post(api.url + "/v1/predict", json={"pairs": []}, headers={"X-API-Key": LIMITED}).status_code
        for _ in range(LIMIT + 3)
    ]
    assert statuses == [422] * LIMIT + [429] * 3  # one unit an hour: no refill within the test
    client = redis.Redis.from_url(redis_url)
    assert client.exists(f"drugrepo:gcra:{key_id(LIMITED)}") and client.pttl(f"drugrepo:gcra:{key_id(LIMITED)}") > 0
    with _serve(tmp_path / "second", golden_dir, redis_url) as other:  # another process sees the same debt
        assert (
            httpx.post(other.url + "/v1/predict", json={"pairs": []}, headers={"X-API-Key": LIMITED}).status_code == 429
        )
    assert _predict(api, ASPIRIN).status_code == 200


def test_a_full_redis_leaves_terms_uncached_but_scores(api: Api, redis_url: str) -> None:
    """maxmemory reached with noeviction: Redis refuses writes (OOM); the request is scored all the same."""
    client = redis.Redis.from_url(redis_url)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", str(used))
    before = httpx.get(api.url + "/metrics").text
    try:
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            client.set("drugrepo:probe", b"x" * 1024)
        targets = set(client.keys("drugrepo:target:*"))
        response = _predict(api, ASPIRIN, protein=PROTEIN[::-1])
        assert response.status_code == 200 and np.isfinite(response.json()["predictions"][0]["logit"])
        assert set(client.keys("drugrepo:target:*")) == targets  # not cached
        again = _predict(api, "CCO", protein=PROTEIN[::-1])
        assert again.status_code == 200
    finally:
        client.config_set("maxmemory", "0")
    text = httpx.get(api.url + "/metrics").text
    assert (
        metric_value(text, "drugrepo_redis_errors_total", {"op": "set"})
        - metric_value(before, "drugrepo_redis_errors_total", {"op": "set"})
        == 1
    )
    assert (
        metric_value(text, "drugrepo_target_cache_total", {"result": "hit", "backend": "redis"})
        - metric_value(before, "drugrepo_target_cache_total", {"result": "hit", "backend": "redis"})
        == 1
    )  # kept in process instead
    assert httpx.get(api.url + "/readyz").json()["status"] == "ready"  # Redis answers: not degraded


def test_entries_of_another_engine_version_are_recomputed(redis_url: str) -> None:
    """A stored entry whose fields are not today's TargetTerms' (an older engine's) is a miss and is replaced."""
    client = redis.Redis.from_url(redis_url)
    cache = RedisTargetCache(
        RedisLink(client, 5, ApiMetrics()), TargetTerms, ttl_seconds=60, fallback=LruTargetCache(4)
    )
    key = "drugrepo:target:test-model:stale"

    @dataclasses.dataclass
    class OldTerms:
        gqh: torch.Tensor
        sq: torch.Tensor

    client.set(key, dump_terms(OldTerms(gqh=torch.ones(2, 2), sq=torch.ones(2))))
    fresh = TargetTerms(gq=torch.full((1, 2, 2), 3.0), sq=torch.full((1, 2), 4.0))
    got, hit = cache.get_or_compute(key, lambda: fresh)
    assert not hit and got is fresh
    again, hit = cache.get_or_compute(key, lambda: pytest.fail("computed although cached"))
    assert hit and torch.equal(again.gq, fresh.gq) and torch.equal(again.sq, fresh.sq)
