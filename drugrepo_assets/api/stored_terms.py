"""Target terms from the store ``drugrepo screen`` fills (`screening.terms`), behind the API's target cache.

On a cache miss a replica reads the target's terms from the store (``DRUGREPO_TARGET_TERMS``: a folder or an
``s3://`` prefix, keyed by the served checkpoint id and the sequence) when a screen or another replica stored
them, else computes and stores them: one replica's work warms the others, and a cold replica warms from a
screen's. The store is never required: a read that fails (store out of reach, a corrupt file) leaves the terms
computed, a write that fails leaves them unstored; each failure is counted by kind and logged once per kind.
A corrupt file is replaced by the terms computed in its place. A replica writes at most its write budget
(``DRUGREPO_TARGET_TERMS_WRITE_MIB``): past it, requests for ever new sequences cannot grow the store.
"""

from __future__ import annotations

import logging
import threading

import torch
from prometheus_client import Counter

from drugrepo_assets.files import StoragePath, storage_path
from drugrepo_assets.screening.engine import ScreeningEngine, TargetTerms
from drugrepo_assets.screening.terms import TargetTermStore, TermsError, block_terms, term_key, terms_bytes

log = logging.getLogger(__name__)

CACHE, STORE, COMPUTED = "cache", "store", "computed"
"""Where a request's target terms came from (the ``source`` label of ``drugrepo_target_terms_total``)."""

CORRUPT, READ, WRITE, BUDGET = "corrupt", "read", "write", "budget"
"""Kinds of store failure (``drugrepo_target_terms_store_errors_total{kind}``): a stored file that is not
the checkpoint's terms, a read that failed, a write that failed, a write past the replica's write budget."""


class WriteBudgetSpent(RuntimeError):
    """A target's terms not stored: the replica has written its budget of bytes to the store."""


class TermsSupply:
    """Where the API's target terms come from past the cache: the store at ``location`` (none: always computed),
    with the counters of sources and failures (`api.metrics`); one per app, shared by every model served. It
    writes at most ``write_budget_bytes`` of terms (None: no bound)."""

    def __init__(
        self,
        location: str | None = None,
        sources: Counter | None = None,
        failures: Counter | None = None,
        write_budget_bytes: int | None = None,
    ) -> None:
        self.location = location
        self.root = storage_path(location) if location else None
        self.sources = sources
        self.failures = failures
        self.write_budget_bytes = write_budget_bytes
        self._written = 0
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def store(self, checkpoint_id: str) -> TargetTermStore | None:
        """The store of one checkpoint's terms (writes that fail are recorded, not raised), or None."""
        return None if self.root is None else _TolerantStore(self.root, checkpoint_id, self)

    def reserve(self, nbytes: int) -> bool:
        """Take ``nbytes`` of the write budget for one file; False (nothing taken) when they would pass it."""
        with self._lock:
            if self.write_budget_bytes is not None and self._written + nbytes > self.write_budget_bytes:
                return False
            self._written += nbytes
            return True

    def count(self, source: str) -> None:
        """Count one target's terms as obtained from ``source``."""
        if self.sources is not None:
            self.sources.labels(source).inc()

    def failed(self, kind: str, exc: BaseException) -> None:
        """Count a store failure of ``kind``; the first of each kind is logged (the store may fail on every miss)."""
        if self.failures is not None:
            self.failures.labels(kind).inc()
        with self._lock:
            first = kind not in self._logged
            self._logged.add(kind)
        if first:
            log.warning(
                "target-terms store %s: %s failure, terms computed instead (the next ones counted in "
                "drugrepo_target_terms_store_errors_total, not logged): %s",
                self.location,
                kind,
                exc,
            )

    def terms(self, engine: ScreeningEngine, sequence: str, store: TargetTermStore | None) -> tuple[TargetTerms, str]:
        """One (cleaned) target's terms and their source: read from ``store`` when stored there, else computed
        (and stored); computed when the store fails."""
        with torch.inference_mode():
            try:
                terms, use = block_terms(engine, [sequence], store)
            except TermsError as exc:
                self.failed(CORRUPT, exc)
                terms, _ = block_terms(engine, [sequence], None)
                if store is not None:
                    store.save(term_key(sequence), terms.gq[0], terms.sq[0])
                return terms, COMPUTED
            except Exception as exc:  # a store out of reach (S3 down, a folder unreadable) must not fail the request
                self.failed(READ, exc)
                return block_terms(engine, [sequence], None)[0], COMPUTED
        return terms, STORE if use.read else COMPUTED


class _TolerantStore(TargetTermStore):
    """A `TargetTermStore` whose failed writes are counted and logged by ``supply`` instead of raised: the
    terms were computed, the request is answered, only the next replica's warm start is lost."""

    def __init__(self, root: StoragePath, checkpoint_id: str, supply: TermsSupply) -> None:
        super().__init__(root, checkpoint_id)
        self.supply = supply

    def save(self, key: str, gq: torch.Tensor, sq: torch.Tensor) -> None:
        """Store one target's terms within the replica's write budget; a failure is recorded, not raised."""
        if not self.supply.reserve(terms_bytes(len(sq))):
            budget = self.supply.write_budget_bytes or 0
            self.supply.failed(BUDGET, WriteBudgetSpent(f"this replica has written its {budget:,} bytes"))
            return
        try:
            super().save(key, gq, sq)
        except Exception as exc:  # a read-only or unreachable store still answers with computed terms
            self.supply.failed(WRITE, exc)
