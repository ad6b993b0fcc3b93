"""Caches of per-target terms (a protein's CNN encoding reduced to the screening engine's target side).

A target's terms cost one protein CNN pass and a 768² Gram product (tens of ms); reused, a pair
costs about a millisecond. In process: an LRU of the tensors, bounded in entries and in bytes (a
target's terms are 2.4 MB at DrugBAN's sizes, 4.7 MB once the C kernel has packed a copy). With Redis: the tensors serialised
once (``torch.save``, loaded back with ``weights_only=True``) under a key of model and sequence, so
every API process shares them; when Redis fails, the in-process LRU serves instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import torch

from drugrepo_assets.api.redislink import RedisLink, RedisUnavailable

KEY_PREFIX = "drugrepo:target"


def target_key(checkpoint_id: str, sequence: str) -> str:
    """Cache key of one target's terms under one model (its checkpoint id and the sequence's SHA-256)."""
    return f"{KEY_PREFIX}:{checkpoint_id}:{hashlib.sha256(sequence.encode()).hexdigest()}"


def dump_terms(terms: Any) -> bytes:
    """Serialise a dataclass of tensors (the engine's target terms) to bytes."""
    fields = {f.name: getattr(terms, f.name) for f in dataclasses.fields(terms)}
    buffer = io.BytesIO()
    torch.save({k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in fields.items()}, buffer)
    return buffer.getvalue()


def load_terms(data: bytes, cls: type) -> Any | None:
    """Rebuild a dataclass of tensors from `dump_terms` bytes (``weights_only``: no code runs).

    None when the stored fields are not ``cls``'s: an entry written by another version of the engine.
    """
    stored = torch.load(io.BytesIO(data), weights_only=True)
    if set(stored) != {f.name for f in dataclasses.fields(cls)}:
        return None
    return cls(**stored)


class TargetCache(Protocol):
    """Get-or-compute store of target terms; ``get_or_compute`` returns (terms, was_hit)."""

    backend: str

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """The cached value of ``key``, or ``compute()`` stored under it."""
        ...


def held_bytes(value: Any) -> int:
    """Bytes of the tensors an entry holds: a tensor, or those among an object's attributes (the engine's
    terms and any copy it keeps of them, such as the C kernel's packed Gram matrices)."""
    if isinstance(value, torch.Tensor):
        return value.nbytes
    return (
        sum(v.nbytes for v in vars(value).values() if isinstance(v, torch.Tensor)) if hasattr(value, "__dict__") else 0
    )


class LruTargetCache:
    """In-process LRU of target terms (thread-safe; computing happens outside the lock).

    Bounded twice: ``size`` entries and ``max_bytes`` of tensors (`held_bytes`, counted again at every
    store, so a copy an entry made of its terms since is counted too); the newest entry is always kept.
    """

    backend = "memory"

    def __init__(self, size: int, max_bytes: int | None = None) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        """The cached terms of ``key`` (now the most recent), or None."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: str, value: Any) -> None:
        """Keep ``value`` under ``key``, evicting the oldest entries beyond ``size``."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            if self.max_bytes is not None:
                held = sum(held_bytes(v) for v in self._items.values())
                while held > self.max_bytes and len(self._items) > 1:
                    held -= held_bytes(self._items.popitem(last=False)[1])

    def bytes_held(self) -> int:
        """Bytes of tensors held by the cached entries now."""
        with self._lock:
            return sum(held_bytes(v) for v in self._items.values())

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """The cached terms of ``key`` or freshly computed ones (then kept, evicting the oldest)."""
        cached = self.get(key)
        if cached is not None:
            return cached, True
        value = compute()
        self.put(key, value)
        return value, False


class RedisTargetCache:
    """Target terms in Redis, shared by every API process, each entry expiring after ``ttl`` seconds.

    Redis is never required: while it is unavailable (timeout, connection refused, breaker open) the
    terms come from and go to the in-process ``fallback``; a store Redis refuses (``maxmemory``
    with ``noeviction``: OOM) leaves the terms uncached there, the request is scored all the same.
    """

    backend = "redis"

    def __init__(self, link: RedisLink, terms_cls: type, ttl_seconds: int, fallback: LruTargetCache) -> None:
        self.link = link
        self.terms_cls = terms_cls
        self.ttl = ttl_seconds
        self.fallback = fallback

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """The terms stored under ``key`` or freshly computed ones, then stored with the TTL."""
        try:
            data: bytes | None = self.link.call("get", lambda c: c.get(key))
        except RedisUnavailable:
            return self.fallback.get_or_compute(key, compute)
        terms = _loaded(data, self.terms_cls) if data is not None else None
        if terms is None:
            terms = self.fallback.get(key)  # kept here when Redis refused to store it
        if terms is not None:
            return terms, True
        value = compute()  # absent, unreadable, or left by another engine version: replaced
        payload = dump_terms(value)
        try:
            self.link.call("set", lambda c: c.set(key, payload, ex=self.ttl))
        except RedisUnavailable:
            self.fallback.put(key, value)  # the failure is counted by the link; the request is still scored
        return value, False


def _loaded(data: bytes, cls: type) -> Any | None:
    """`load_terms`, or None for bytes that are not a stored entry (corrupt or foreign)."""
    try:
        return load_terms(data, cls)
    except Exception:  # any unreadable entry is a miss, recomputed and overwritten
        return None
