"""The API's request log writer: per scored pair, one `request_records.RequestRecord` (hashed key id, model,
role, request id and pair position, input descriptors, logit and score), read back by `request_records.scan_request_log`.

One background thread writes the records (descriptors cost RDKit work that should not sit in a
request's latency) from a bounded queue: when it is full, `RequestLog.submit` drops the batch and
counts it instead of blocking. A molecule's descriptors are computed once per write for all its
copies and remembered for the next writes (an LRU of `DESCRIPTOR_CACHE` molecules); in the API they
are computed in a `data.sandbox` worker under the molecules' budget, so RDKit never holds the server's
GIL, and a molecule over budget is written without descriptors and counted. A failed write is retried
with backoff, counted and shown by `RequestLog.status`; the thread only ends on ``close``. Raw SMILES
and sequences are never written. The file and object layouts are `request_records`'.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from drugrepo_assets.data.rules import Refusal
from drugrepo_assets.data.sandbox import Sandbox, molecule_map
from drugrepo_assets.files import is_local, storage_path, write_bytes_atomic
from drugrepo_assets.location import Location, as_location
from drugrepo_assets.ml.features.descriptors import molecule_descriptors, protein_descriptors
from drugrepo_assets.request_records import CHAMPION, RequestRecord

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUED_PAIRS = 50_000
DEFAULT_S3_FLUSH_SECONDS = 30.0
_PROTEIN_CACHE = 1024
DESCRIPTOR_CACHE = 4096
"""Distinct molecules whose descriptors the log remembers across writes (keyed by a 16-byte digest)."""


@dataclass
class LoggedBatch:
    """Pairs scored by one request and one model: ``role`` is champion or challenger (the model that answered) or
    shadow (the challenger's copy, never answered); ``request_id`` is shared by the request's records of every role,
    ``pairs`` are the pairs' positions in the request (default: in order), so a pair's scores join across roles."""

    endpoint: str
    key_id: str
    model_version: str
    checkpoint_id: str
    smiles: Sequence[str]
    proteins: Sequence[str]
    logits: Sequence[float]
    scores: Sequence[float]
    role: str = CHAMPION
    request_id: str = ""
    pairs: Sequence[int] | None = None


def _digest(smiles: str) -> bytes:
    """A molecule's key in the descriptor LRU: 16 bytes, however long its SMILES."""
    return hashlib.blake2b(smiles.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _host_label(hostname: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", hostname) or "host"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _StatusCollector:
    """Prometheus view of `RequestLog.status`, read at scrape time."""

    def __init__(self, request_log: RequestLog) -> None:
        self._log = request_log

    def collect(self) -> Iterable[Metric]:
        s = self._log.status()
        prefix = "drugrepo_request_log"
        yield GaugeMetricFamily(
            f"{prefix}_healthy",
            "1 while the request-log writer runs and its last write succeeded.",
            value=float(s["healthy"]),
        )
        yield GaugeMetricFamily(f"{prefix}_queued_pairs", "Pairs waiting to be written.", value=s["queued_pairs"])
        yield CounterMetricFamily(
            f"{prefix}_written_pairs", "Pairs written to the request log.", value=s["written_pairs"]
        )
        yield CounterMetricFamily(
            f"{prefix}_dropped_pairs",
            "Pairs not logged (queue full, retries exhausted, bad batch).",
            value=s["dropped_pairs"],
        )
        yield CounterMetricFamily(f"{prefix}_dropped_batches", "Batches not logged.", value=s["dropped"])
        yield CounterMetricFamily(
            f"{prefix}_write_failures", "Failed write attempts (each retry counts).", value=s["write_failures"]
        )
        yield CounterMetricFamily(
            f"{prefix}_descriptors_computed",
            "Molecules whose descriptors were computed (once per distinct molecule, remembered across writes).",
            value=s["descriptors_computed"],
        )
        yield CounterMetricFamily(
            f"{prefix}_descriptors_over_budget",
            "Molecules logged without descriptors: RDKit's work on them passed the molecule budget.",
            value=s["descriptors_over_budget"],
        )


class RequestLog:
    """Asynchronous, bounded writer of `LoggedBatch` records to a folder or ``s3://`` prefix (on its `Location.endpoint`).

    ``close`` writes what is queued and stops; `status` tells whether it is healthy and what it lost.

    ``max_queued_pairs`` bounds the queue (a batch that does not fit is dropped and counted); a write is
    tried ``max_attempts`` times, ``sleep``-ing ``backoff_seconds`` doubled up to ``max_backoff_seconds``
    in between, then its batches are dropped and counted. ``flush_interval_seconds`` lets queued
    batches gather into one write (default: none locally, 30 s on S3, where every write is an object).
    ``registry`` gets the `status` counters as ``drugrepo_request_log_*`` metrics. ``descriptors`` is
    the `data.sandbox.molecule_sandbox` (its owner closes it) where `ml.features.descriptors.molecule_descriptors`
    runs, each molecule within its budget; without it they are computed on the writer thread.
    """

    def __init__(
        self,
        folder: Location | str | Path,
        *,
        max_queued_pairs: int = DEFAULT_MAX_QUEUED_PAIRS,
        max_attempts: int = 5,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        flush_interval_seconds: float | None = None,
        max_pairs_per_write: int = 10_000,
        hostname: str | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] = _utc_now,
        registry: CollectorRegistry | None = None,
        descriptors: Sandbox[Any] | None = None,
    ) -> None:
        if max_queued_pairs < 1 or max_attempts < 1 or max_pairs_per_write < 1:
            raise ValueError("max_queued_pairs, max_attempts and max_pairs_per_write must be at least 1")
        self._root = storage_path(as_location(folder))
        self._local = is_local(self._root)
        self.folder: Any = Path(self._root.path) if self._local else self._root
        self.max_queued_pairs = max_queued_pairs
        self._max_attempts = max_attempts
        self._backoff = (backoff_seconds, max_backoff_seconds)
        self._linger = (
            flush_interval_seconds
            if flush_interval_seconds is not None
            else (0.0 if self._local else DEFAULT_S3_FLUSH_SECONDS)
        )
        self._max_pairs_per_write = max_pairs_per_write
        self._writer_id = f"{_host_label(hostname or socket.gethostname())}-{uuid.uuid4().hex[:8]}"
        self._sleep = sleep
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[tuple[datetime, LoggedBatch]] = deque()
        self._queued_pairs = 0
        self._submitted = self._processed = 0
        self._flushing = 0
        self._stopping = threading.Event()
        self._written_pairs = self._dropped = self._dropped_pairs = self._write_failures = 0
        self._failing = False
        self._last_error: str | None = None
        self._seq = 0
        self._torn = False
        self._proteins: dict[str, dict[str, float]] = {}
        self._descriptors = descriptors
        self._molecules: OrderedDict[bytes, dict[str, float]] = OrderedDict()
        self._computed = self._over_budget = 0
        if self._local:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self._failing, self._last_error = True, f"{type(exc).__name__}: {exc}"
        self._collector: _StatusCollector | None = None
        self._registry = registry
        if registry is not None:
            self._collector = _StatusCollector(self)
            registry.register(self._collector)
        self._thread: threading.Thread | None = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def submit(self, batch: LoggedBatch) -> bool:
        """Queue one request's pairs without blocking; False (and counted as dropped) when the queue is full or closed."""
        pairs = len(batch.smiles)
        now = self._clock()
        with self._cond:
            if self._stopping.is_set() or self._queued_pairs + pairs > self.max_queued_pairs:
                self._dropped += 1
                self._dropped_pairs += pairs
                return False
            self._queue.append((now, batch))
            self._queued_pairs += pairs
            self._submitted += 1
            self._cond.notify_all()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every batch submitted so far is written or dropped; False if ``timeout`` seconds pass first."""
        with self._cond:
            target = self._submitted
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._processed >= target, timeout)
            finally:
                self._flushing -= 1

    def status(self) -> dict[str, Any]:
        """Health and counters: healthy (writer alive, last write succeeded), queue, written, dropped, failures, last error."""
        with self._cond:
            alive = self._thread is not None and self._thread.is_alive()
            return {
                "healthy": alive and not self._failing,
                "alive": alive,
                "destination": str(self.folder),
                "queued": len(self._queue),
                "queued_pairs": self._queued_pairs,
                "max_queued_pairs": self.max_queued_pairs,
                "written_pairs": self._written_pairs,
                "dropped": self._dropped,
                "dropped_pairs": self._dropped_pairs,
                "write_failures": self._write_failures,
                "descriptors_computed": self._computed,
                "descriptors_over_budget": self._over_budget,
                "last_error": self._last_error,
            }

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued (retries no longer wait) and stop the writer thread."""
        if self._thread is not None:
            with self._cond:
                self._stopping.set()
                self._cond.notify_all()
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("request log writer still busy after %s s at close", timeout)
            else:
                self._thread = None
        if self._collector is not None and self._registry is not None:
            self._registry.unregister(self._collector)
            self._collector = None

    def _next_group(self) -> list[tuple[datetime, LoggedBatch]] | None:
        """Wait for queued batches (lingering up to the flush interval) and take up to a write's worth; None at close."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._stopping.is_set())
            if not self._queue:
                return None
            if self._linger > 0:
                self._cond.wait_for(
                    lambda: (
                        self._stopping.is_set() or self._flushing > 0 or self._queued_pairs >= self._max_pairs_per_write
                    ),
                    self._linger,
                )
            group: list[tuple[datetime, LoggedBatch]] = []
            pairs = 0
            while self._queue and (not group or pairs + len(self._queue[0][1].smiles) <= self._max_pairs_per_write):
                item = self._queue.popleft()
                group.append(item)
                pairs += len(item[1].smiles)
            self._queued_pairs -= pairs
            return group

    def _run(self) -> None:
        while True:
            group = self._next_group()
            if group is None:
                return
            try:
                self._process(group)
            except Exception as exc:
                self._drop([batch for _, batch in group], exc)
            finally:
                with self._cond:
                    self._processed += len(group)
                    self._cond.notify_all()

    def _process(self, group: list[tuple[datetime, LoggedBatch]]) -> None:
        chunks, pairs, kept = [], 0, []
        molecules = self._molecule_descriptors(s for _, batch in group for s in batch.smiles)
        for ts, batch in group:
            try:
                chunks.append(self._render(ts, batch, molecules))
            except Exception as exc:
                self._drop([batch], exc)
                continue
            pairs += len(batch.smiles)
            kept.append(batch)
        if not chunks:
            return
        data = b"".join(chunks)
        for attempt in range(1, self._max_attempts + 1):
            try:
                self._write(data, self._clock(), repair=attempt > 1)
            except Exception as exc:
                with self._cond:
                    self._write_failures += 1
                    self._failing, self._last_error = True, f"{type(exc).__name__}: {exc}"
                log.warning("request log write failed (attempt %d of %d): %s", attempt, self._max_attempts, exc)
                if attempt == self._max_attempts:
                    self._drop(kept, None)
                    return
                self._wait(min(self._backoff[0] * 2 ** (attempt - 1), self._backoff[1]))
            else:
                with self._cond:
                    self._written_pairs += pairs
                    self._failing = False
                return

    def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self._stopping.wait(seconds)

    def _drop(self, batches: list[LoggedBatch], exc: Exception | None) -> None:
        with self._cond:
            self._dropped += len(batches)
            self._dropped_pairs += sum(len(b.smiles) for b in batches)
            if exc is not None:
                self._last_error = f"{type(exc).__name__}: {exc}"
        if exc is not None:
            log.error("request log dropped %d batches: %s", len(batches), exc)

    def _molecule_descriptors(self, smiles: Iterable[str]) -> dict[str, dict[str, float]]:
        """The descriptors of each distinct SMILES (empty when refused or over budget): remembered ones from the
        LRU, the others computed at once (in the sandbox when there is one)."""
        known: dict[str, dict[str, float]] = {}
        wanted: dict[str, bytes] = {}
        for s in dict.fromkeys(smiles):
            key = _digest(s)
            if key in self._molecules:
                self._molecules.move_to_end(key)
                known[s] = self._molecules[key]
            else:
                wanted[s] = key
        found: list[dict[str, float] | Refusal | None] = (
            molecule_map(molecule_descriptors, list(wanted), sandbox=self._descriptors)
            if self._descriptors is not None
            else [molecule_descriptors(s) for s in wanted]
        )
        over_budget = 0
        for (s, key), descriptors in zip(wanted.items(), found, strict=True):
            if isinstance(descriptors, Refusal):
                over_budget += 1
                descriptors = None
            known[s] = self._molecules[key] = descriptors or {}
            if len(self._molecules) > DESCRIPTOR_CACHE:
                self._molecules.popitem(last=False)
        with self._cond:
            self._computed += len(wanted)
            self._over_budget += over_budget
        return known

    def _render(self, ts: datetime, batch: LoggedBatch, molecules: dict[str, dict[str, float]]) -> bytes:
        lines = []
        pairs = range(len(batch.smiles)) if batch.pairs is None else batch.pairs
        for s, p, logit, score, pair in zip(
            batch.smiles, batch.proteins, batch.logits, batch.scores, pairs, strict=True
        ):
            if p not in self._proteins:
                if len(self._proteins) >= _PROTEIN_CACHE:
                    self._proteins.clear()
                self._proteins[p] = protein_descriptors(p)
            record = RequestRecord(
                ts=ts.isoformat(),
                endpoint=batch.endpoint,
                key_id=batch.key_id,
                model_version=batch.model_version,
                checkpoint_id=batch.checkpoint_id,
                role=batch.role,
                request_id=batch.request_id,
                pair=int(pair),
                descriptors={**molecules[s], **self._proteins[p]},
                logit=float(logit),
                score=float(score),
            )
            lines.append(record.to_json_line() + "\n")
        return "".join(lines).encode("utf-8")

    def _write(self, data: bytes, now: datetime, repair: bool) -> None:
        """Append ``data`` to this writer's file of the day (a retry recreates the folder), or put the next object."""
        if not self._local:
            write_bytes_atomic(self._root / f"requests-{now:%Y%m%d}-{self._writer_id}-{self._seq:06d}.jsonl", data)
            self._seq += 1
            return
        if repair:
            self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"requests-{now:%Y%m%d}-{self._writer_id}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            view = memoryview(b"\n" + data if self._torn and start else data)
            try:
                while view:
                    view = view[os.write(fd, view) :]
            except BaseException:
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    self._torn = True
                raise
        finally:
            os.close(fd)
        self._torn = False
