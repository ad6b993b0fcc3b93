"""The request log's record and its reader: one JSON line per scored pair, written by the API
(`api.request_log.RequestLog`) and read by the serving location (drift report, champion/challenger).

Outside ``api/`` so that the serving location reads the log without importing the API. A record names
the hashed key id, the model (``model_version``, ``checkpoint_id``, ``role``: one of `ROLES`), the request
(``request_id``, shared by a request's pairs and roles; ``pair``, the position in the request), the input
descriptors (`ml.features.descriptors`, flat in the line), logit and score. Raw SMILES and sequences are never written.

Layouts, both read by `scan_request_log` (every ``requests-*.jsonl`` of the folder or prefix):

- a local folder: each writer appends JSON lines to its own ``requests-<YYYYMMDD>-<host>-<uuid8>.jsonl``
  (host and a per-writer uuid, since the pid is 1 in every container on a shared volume);
- ``s3://bucket/prefix``: S3 has no append, so each flush is a new object
  ``requests-<YYYYMMDD>-<host>-<uuid8>-<seq>.jsonl``, published whole (`drugrepo_assets.files`).

A reader skips and counts lines that are not a record (a replica killed mid-line, garbage bytes, a field of
the wrong type); records written before roles existed read as role ``champion`` (they were answered by the
one model served), and a field a record lacks reads as its default.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from drugrepo_assets.files import is_local, storage_path
from drugrepo_assets.location import Location, as_location

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "FILE_GLOB",
    "ROLES",
    "SHADOW",
    "RequestLogScan",
    "RequestRecord",
    "scan_request_log",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
SHADOW = "shadow"
ROLES = (CHAMPION, CHALLENGER, SHADOW)
"""Who scored a pair: the champion or the challenger answered it; a shadow is the challenger's unanswered copy."""

FILE_GLOB = "requests-*.jsonl"


@dataclass(frozen=True)
class RequestRecord:
    """One scored pair of the request log, as one JSON line (`to_json_line`, `from_json_line`)."""

    ts: str = ""
    """When the writer took the batch, ISO 8601 in UTC."""
    endpoint: str = ""
    key_id: str = ""
    """The API key's hashed id, never the key."""
    model_version: str = ""
    """``<registered name>/<version>`` of the model that scored the pair."""
    checkpoint_id: str = ""
    role: str = CHAMPION
    """One of `ROLES`; a record written before roles existed is the champion's."""
    request_id: str = ""
    """Shared by a request's records of every role; "" for records written before request ids."""
    pair: int | None = None
    """The pair's position in its request (joins a shadow record to the champion's)."""
    descriptors: Mapping[str, float] = field(default_factory=dict)
    """`ml.features.descriptors` of the molecule (absent when refused or over budget) and of the protein."""
    logit: float | None = None
    score: float | None = None

    def has_score(self) -> bool:
        """True when the record carries a finite score (a comparison skips the others)."""
        return self.score is not None and math.isfinite(self.score)

    def to_json_line(self) -> str:
        """The record as one JSON line (no newline): its fields, the descriptors flat among them."""
        line: dict[str, Any] = {name: getattr(self, name) for name in _SCALAR_FIELDS[:-2]}
        line.update(self.descriptors)
        line.update(logit=self.logit, score=self.score)
        return json.dumps(line)

    @classmethod
    def from_json_line(cls, line: str | bytes) -> RequestRecord:
        """The record of one JSON line; ValueError when it is not a JSON object or a field has the wrong type.
        A field the line lacks takes its default; keys that are not fields are descriptors when they are numbers."""
        value = json.loads(line.decode("utf-8") if isinstance(line, bytes) else line)
        if not isinstance(value, dict):
            raise ValueError(f"not a JSON object: {type(value).__name__}")
        return cls(
            ts=_text(value, "ts"),
            endpoint=_text(value, "endpoint"),
            key_id=_text(value, "key_id"),
            model_version=_text(value, "model_version"),
            checkpoint_id=_text(value, "checkpoint_id"),
            role=_text(value, "role", CHAMPION),
            request_id=_text(value, "request_id"),
            pair=_integer(value, "pair"),
            descriptors={k: float(v) for k, v in value.items() if k not in _SCALAR_FIELDS and _is_number(v)},
            logit=_number(value, "logit"),
            score=_number(value, "score"),
        )


_SCALAR_FIELDS = tuple(f.name for f in fields(RequestRecord) if f.name != "descriptors")
"""The record's fields in line order, the descriptors left out (they sit flat between ``pair`` and ``logit``)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(value: dict[str, Any], name: str, default: str = "") -> str:
    found = value.get(name, default)
    if not isinstance(found, str):
        raise ValueError(f"field {name}: {found!r} is not a string")
    return found


def _integer(value: dict[str, Any], name: str) -> int | None:
    found = value.get(name)
    if found is not None and (not isinstance(found, int) or isinstance(found, bool)):
        raise ValueError(f"field {name}: {found!r} is not an integer")
    return found


def _number(value: dict[str, Any], name: str) -> float | None:
    found = value.get(name)
    if found is None:
        return None
    if not _is_number(found):
        raise ValueError(f"field {name}: {found!r} is not a number")
    return float(found)


@dataclass
class RequestLogScan:
    """What a read of the request log found: the records, the lines skipped as malformed, the files read."""

    records: list[RequestRecord]
    malformed_lines: int
    files: int


def _parse(data: bytes, records: list[RequestRecord]) -> int:
    """Append every record line of ``data`` to ``records``; the number of other non-blank lines."""
    malformed = 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            records.append(RequestRecord.from_json_line(raw))
        except ValueError:
            malformed += 1
    return malformed


def _contents(location: Location | str | Path) -> Iterator[bytes]:
    root = storage_path(as_location(location))
    if is_local(root):
        folder = Path(root.path)
        for path in sorted(folder.glob(FILE_GLOB)) if folder.is_dir() else []:
            try:
                yield path.read_bytes()
            except FileNotFoundError:
                continue
    else:
        found = sorted(root.fs.glob(f"{root.path.rstrip('/')}/{FILE_GLOB}"))
        if found:
            blobs = root.fs.cat(found)
            yield from (blobs[path] for path in found)


def scan_request_log(location: Location | str | Path) -> RequestLogScan:
    """Every record of every request-log file in a folder or ``s3://`` prefix (an absent folder has none);
    malformed lines are counted, not raised."""
    records: list[RequestRecord] = []
    malformed = files = 0
    for data in _contents(location):
        files += 1
        malformed += _parse(data, records)
    return RequestLogScan(records, malformed, files)
