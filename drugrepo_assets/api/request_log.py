"""Request logging for drift monitoring: per scored pair, the hashed key id, input descriptors and score.

Records are appended as JSON lines to ``<folder>/requests-<UTC date>-<pid>.jsonl`` by one background
thread (descriptors cost RDKit work that should not sit in a request's latency). Raw SMILES and
sequences are not written, only their descriptors; the drift report reads every file of the folder.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

from drugrepo_assets.ml.descriptors import molecule_descriptors, protein_descriptors

_STOP = object()


@dataclass
class LoggedBatch:
    """Pairs scored by one request."""

    endpoint: str
    key_id: str
    model_version: str
    smiles: Sequence[str]
    proteins: Sequence[str]
    logits: Sequence[float]
    scores: Sequence[float]


def read_request_log(folder: str | Path) -> list[dict]:
    """Every record of every JSONL file in ``folder`` (an absent folder has none)."""
    root = Path(folder)
    records: list[dict] = []
    for path in sorted(root.glob("requests-*.jsonl")) if root.is_dir() else []:
        for line in path.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


class RequestLog:
    """Asynchronous JSONL writer of `LoggedBatch` records; ``close`` writes what is queued and stops."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue = queue.Queue()
        self._thread: Optional[threading.Thread] = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def submit(self, batch: LoggedBatch) -> None:
        """Queue one request's pairs for writing."""
        self._queue.put(batch)

    def flush(self) -> None:
        """Block until everything queued so far is written."""
        self._queue.join()

    def close(self) -> None:
        """Write what is queued and stop the writer thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def _path(self, now: datetime) -> Path:
        return self.folder / f"requests-{now:%Y%m%d}-{os.getpid()}.jsonl"

    def _run(self) -> None:
        proteins: dict[str, dict[str, float]] = {}
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._write(item, proteins)
            finally:
                self._queue.task_done()

    def _write(self, batch: LoggedBatch, proteins: dict[str, dict[str, float]]) -> None:
        now = datetime.now(timezone.utc)
        lines = []
        for s, p, logit, score in zip(batch.smiles, batch.proteins, batch.logits, batch.scores):
            if p not in proteins:
                if len(proteins) > 1024:
                    proteins.clear()
                proteins[p] = protein_descriptors(p)
            record = {
                "ts": now.isoformat(),
                "endpoint": batch.endpoint,
                "key_id": batch.key_id,
                "model_version": batch.model_version,
                **(molecule_descriptors(s) or {}),
                **proteins[p],
                "logit": float(logit),
                "score": float(score),
            }
            lines.append(json.dumps(record))
        with open(self._path(now), "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
