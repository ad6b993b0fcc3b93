"""The API with Redis (a real redis-server started here): target terms cached in Redis and shared by
two API processes, rate limits counted in Redis, readiness following Redis."""

import dataclasses
import time
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import redis
import torch

from drugrepo_assets.api.cache import RedisTargetCache, dump_terms
from drugrepo_assets.api.guard import key_id
from drugrepo_assets.ml.screen import TargetTerms
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
    env = {"DRUGREPO_API_KEYS": f"{KEY},{LIMITED}", "DRUGREPO_REDIS_URL": redis_url,
           "DRUGREPO_RATE_LIMIT_PER_MINUTE": str(LIMIT)}
    return running_api(folder, ["--checkpoint", str(golden_dir / "model_state.pt")], env)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path, redis_url: str) -> Iterator[Api]:
    """``drugrepo serve`` with DRUGREPO_REDIS_URL."""
    with _serve(tmp_path_factory.mktemp("api-redis"), golden_dir, redis_url) as running:
        yield running


def _predict(api: Api, smiles: str, key: str = KEY) -> httpx.Response:
    return httpx.post(api.url + "/v1/predict", json={"pairs": [{"smiles": smiles, "protein": PROTEIN}]},
                      headers={"X-API-Key": key}, timeout=60)


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


def test_rate_limit_is_counted_in_redis(api: Api, redis_url: str) -> None:
    while time.time() % 60 > 50:  # keep the burst inside one clock minute (Redis counts per minute)
        time.sleep(1)
    statuses = [httpx.post(api.url + "/v1/predict", json={"pairs": []}, headers={"X-API-Key": LIMITED}).status_code
                for _ in range(LIMIT + 3)]
    assert statuses == [422] * LIMIT + [429] * 3
    [counter] = redis.Redis.from_url(redis_url).keys(f"drugrepo:rate:{key_id(LIMITED)}:*")
    assert int(redis.Redis.from_url(redis_url).get(counter)) == LIMIT + 3
    assert _predict(api, ASPIRIN).status_code == 200


def test_entries_of_another_engine_version_are_recomputed(redis_url: str) -> None:
    """A stored entry whose fields are not today's TargetTerms' (an older engine's) is a miss and is replaced."""
    client = redis.Redis.from_url(redis_url)
    cache = RedisTargetCache(client, TargetTerms, ttl_seconds=60)
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
