"""The in-process target cache is bounded in entries and in bytes of tensors (DRUGREPO_CACHE_SIZE,
DRUGREPO_CACHE_MAX_BYTES), copies an entry makes of its terms after it is stored included."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from drugrepo_assets.api.cache import LruTargetCache, held_bytes
from drugrepo_assets.api.settings import ServingSettings

MIB = 2**20


@dataclass
class Terms:
    """Stands for the engine's target terms: one tensor, and a packed copy made on first use."""

    gq: torch.Tensor

    def pack(self) -> None:
        self.__dict__["_packed"] = self.gq.clone()


def _terms(mib: int) -> Terms:
    return Terms(torch.zeros(mib * MIB // 4, dtype=torch.float32))


def test_the_oldest_entries_go_once_the_bytes_are_over_the_bound() -> None:
    cache = LruTargetCache(size=100, max_bytes=3 * MIB)
    for key in "abcde":
        cache.put(key, _terms(1))
    assert [k for k in "abcde" if cache.get(k) is not None] == ["c", "d", "e"]
    assert cache.bytes_held() == 3 * MIB


def test_a_copy_made_after_storing_is_counted_at_the_next_store() -> None:
    cache = LruTargetCache(size=100, max_bytes=4 * MIB)
    first, second = _terms(1), _terms(1)
    cache.put("a", first)
    cache.put("b", second)
    first.pack()
    second.pack()
    assert held_bytes(first) == 2 * MIB
    cache.put("c", _terms(1))
    assert cache.get("a") is None and cache.get("b") is second and cache.bytes_held() <= 4 * MIB


def test_the_entry_bound_still_holds_and_the_newest_entry_is_kept_whatever_its_size() -> None:
    cache = LruTargetCache(size=2, max_bytes=10 * MIB)
    for key in "abc":
        cache.put(key, _terms(1))
    assert cache.get("a") is None and cache.get("c") is not None
    cache.put("huge", _terms(20))
    assert cache.get("huge") is not None and cache.get("c") is None


def test_the_bounds_are_settings() -> None:
    settings = ServingSettings(cache_size=7, cache_max_bytes=123)
    assert (settings.cache_size, settings.cache_max_bytes) == (7, 123)
    assert ServingSettings().cache_max_bytes == 512 * MIB
