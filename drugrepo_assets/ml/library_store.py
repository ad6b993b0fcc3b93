"""A library kept as shards over the content-addressed feature store: each file read and featurised once.

`store_library_file` streams one library file into shards of ``shard_size`` molecules: each shard's
molecules are featurised in a process pool (compact codes and canonical SMILES from one parse),
stored under their content ids (`data.validate.drug_id`) in the feature store, and listed in a
small Parquet table ``<root>/shards/<shard>.parquet`` (``drug_id, smiles, feature_id,
feature_shard``) named by its content. A JSON record per file version
(``<root>/files/<key>.json``) lists its shards, so a file already read is not read again: a
library that grows by a file costs that file only. A shard is the unit of scoring
(`library_screen.score_stored_shard`).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from drugrepo_assets.data.library import iter_library
from drugrepo_assets.data.validate import drug_id
from drugrepo_assets.files import write_bytes_atomic
from drugrepo_assets.ml.feature_store import FeatureStore
from drugrepo_assets.ml.library_screen import FeaturePool, LibraryShard, iter_shards, refuse
from drugrepo_assets.ml.scores import (
    SCORES,
    ShardScores,
    rank_top,
    read_top,
    scored_targets,
    target_logits,
    write_shard,
)
from drugrepo_assets.ml.screen import ScreeningEngine

SHARD_COLUMNS = ["drug_id", "smiles", "feature_id", "feature_shard"]
REJECTED_COLUMNS = ["source_file", "source_row", "id", "value", "reason"]


@dataclass
class LibraryPart:
    """One shard of a stored library: its name, its table's URI, its molecule count and source file."""

    shard: str
    uri: str
    molecules: int
    source: str


PLAN_COLUMNS: tuple[str, ...] = ("shard", "uri", "molecules", "source")
"""A library plan's columns: one row per `LibraryPart`, its fields in order."""


def plan_table(parts: Sequence[LibraryPart]) -> pd.DataFrame:
    """A library's parts as a table (``PLAN_COLUMNS``), one row per shard in library order."""
    return pd.DataFrame([asdict(p) for p in parts], columns=list(PLAN_COLUMNS))


def plan_parts(plan: pd.DataFrame) -> list[LibraryPart]:
    """The parts a `plan_table` lists, in its order."""
    rows = plan[list(PLAN_COLUMNS)].itertuples(index=False)
    return [LibraryPart(str(shard), str(uri), int(molecules), str(source)) for shard, uri, molecules, source in rows]


@dataclass
class StoredFile:
    """A library file as stored: its shards, its refused rows, and how many molecules were featurised now."""

    parts: list[LibraryPart]
    rejected: pd.DataFrame
    featurised: int
    reused: bool


def _parquet_bytes(table: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def write_part(root: Any, table: pd.DataFrame, source: str) -> LibraryPart:
    """Publish a shard table (``SHARD_COLUMNS``) under its content name; the same molecules give the same name."""
    digest = hashlib.sha256("\n".join(f"{a}\t{b}" for a, b in zip(table["drug_id"], table["feature_id"])).encode())
    shard = digest.hexdigest()[:16]
    path = root / "shards" / f"{shard}.parquet"
    if not path.exists():
        write_bytes_atomic(path, _parquet_bytes(table[SHARD_COLUMNS]))
    return LibraryPart(shard, str(path), len(table), source)


def read_part(part: LibraryPart, root: Any) -> pd.DataFrame:
    """A shard's table."""
    with (root / "shards" / f"{part.shard}.parquet").open("rb") as handle:
        return pd.read_parquet(handle)


class IdCheck:
    """Refuses empty ids and ids already seen in this library (kept as 8-byte hashes, not strings)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    @staticmethod
    def _key(name: str) -> int:
        return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")

    def add(self, names: Iterable[str]) -> None:
        """Ids taken by rows read before (a stored file's)."""
        self.seen.update(map(self._key, names))

    def __call__(self, shards: Iterable[LibraryShard]) -> Iterator[LibraryShard]:
        for shard in shards:
            reasons = []
            for i, name in enumerate(shard.rows["id"].astype(str)):
                key = self._key(name)
                if not name.strip():
                    reasons.append((i, "id: empty"))
                elif key in self.seen:
                    reasons.append((i, f"id: {name!r} already used on an earlier row"))
                else:
                    self.seen.add(key)
            yield refuse(shard, reasons)


def _file_key(label: str, version: str) -> str:
    return hashlib.sha256(f"{label}\n{version}".encode()).hexdigest()[:20]


def store_library_file(
    location: str,
    label: str,
    version: str | None,
    store: FeatureStore,
    root: Any,
    *,
    shard_size: int,
    pool: FeaturePool,
    ids: IdCheck,
    s3_endpoint_url: str | None = None,
) -> StoredFile:
    """Read file ``label`` of library ``location`` into shards (unless this version was read before)."""
    key = _file_key(label, version) if version else None
    record = root / "files" / f"{key}.json" if key else None
    if record is not None and record.exists():
        saved = json.loads(record.read_text())
        stored = [LibraryPart(**p) for p in saved["parts"]]
        for part in stored:
            ids.add(read_part(part, root)["drug_id"])
        with (root / "files" / saved["rejected"]).open("rb") as handle:
            rejected = pd.read_parquet(handle)
        return StoredFile(stored, rejected, 0, True)
    parts, rejected, featurised = [], [], 0
    shards = ids(iter_shards(iter_library(location, s3_endpoint_url=s3_endpoint_url, only=label), shard_size))
    for shard in shards:
        molecules, refused, canonical = pool.result(pool.submit(shard.rows["smiles"].astype(str).tolist()))
        shard = refuse(shard, refused)
        rejected.append(shard.rejected)
        kept = shard.rows
        if kept.empty:
            continue
        feature_ids = [drug_id(c) for c in canonical]
        result = store.drugs.put(feature_ids, molecules)
        featurised += result.new
        table = pd.DataFrame(
            {
                "drug_id": kept["id"].astype(str),
                "smiles": kept["smiles"].astype(str),
                "feature_id": feature_ids,
                "feature_shard": [result.shard_of[f] for f in feature_ids],
            }
        )
        parts.append(write_part(root, table, label))
    refused_rows = _rejected_table(rejected)
    if record is not None:
        name = f"{key}.rejected.parquet"
        write_bytes_atomic(root / "files" / name, _parquet_bytes(refused_rows))
        write_bytes_atomic(record, json.dumps({"parts": [asdict(p) for p in parts], "rejected": name}).encode())
    return StoredFile(parts, refused_rows, featurised, False)


def _rejected_table(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    frame = (
        pd.concat([p for p in parts if len(p)], ignore_index=True)
        if any(len(p) for p in parts)
        else pd.DataFrame(columns=["file", "line", "id", "value", "reason"])
    )
    out = frame.rename(columns={"file": "source_file", "line": "source_row"})[REJECTED_COLUMNS]
    return out.astype({"source_file": str, "source_row": np.int64, "id": str, "value": str, "reason": str})


def store_known_molecules(items: pd.DataFrame, root: Any, shard_size: int, source: str) -> list[LibraryPart]:
    """Shards of molecules already in the feature store (``drug_id, smiles, feature_id, feature_shard``)."""
    return [
        write_part(root, items.iloc[i : i + shard_size].reset_index(drop=True), source)
        for i in range(0, len(items), shard_size)
    ]


def cap_parts(parts: Sequence[LibraryPart], root: Any, limit: int) -> list[LibraryPart]:
    """The first ``limit`` molecules of a library (the shard that straddles the limit cut and stored anew)."""
    out, total = [], 0
    for part in parts:
        if total + part.molecules <= limit:
            out.append(part)
            total += part.molecules
            continue
        if limit > total:
            out.append(write_part(root, read_part(part, root).head(limit - total), part.source))
        break
    return out


@dataclass
class ShardScore:
    """One stored shard scored: which score file holds each target, and the work done now vs found done."""

    shard: str
    files: dict[str, str]
    molecules: int
    scored_pairs: int
    reused_pairs: int
    seconds: float


def score_stored_shard(
    engine: ScreeningEngine,
    store: FeatureStore,
    part: LibraryPart,
    library_root: Any,
    target_ids: Sequence[str],
    target_codes: torch.Tensor,
    score_root: Any,
    top: int,
) -> ShardScore:
    """Score a stored shard against the targets it has no score file for yet (idempotent: a rerun or a
    retry finds its files; a new target costs only itself). Files: ``<shard>-k<top>-<targets>``."""
    prefix = f"{part.shard}-k{top}-"
    files = stored_files(score_root, part.shard, top)
    missing = [i for i, t in enumerate(target_ids) if t not in files]
    seconds = 0.0
    if missing:
        table = read_part(part, library_root)
        molecules = store.drugs.load_compact(table["feature_id"].tolist(), table["feature_shard"].tolist())
        start = time.perf_counter()
        logits = engine.score_compact(molecules, target_codes[missing])
        seconds = time.perf_counter() - start
        names = [target_ids[i] for i in missing]
        name = prefix + hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
        scores = ShardScores(table["drug_id"].to_numpy(object), table["smiles"].to_numpy(object), logits, names)
        write_shard(score_root, name, scores, top)
        files.update(dict.fromkeys(names, name))
    scored = part.molecules * len(missing)
    return ShardScore(
        part.shard,
        {t: files[t] for t in target_ids},
        part.molecules,
        scored,
        part.molecules * len(target_ids) - scored,
        seconds,
    )


def stored_files(score_root: Any, shard: str, top: int) -> dict[str, str]:
    """target → the score file of ``shard`` holding it (``<shard>-k<top>-*``; the first by name)."""
    folder = score_root / SCORES
    names = (
        sorted(p.name.removesuffix(".parquet") for p in folder.glob(f"{shard}-k{top}-*.parquet"))
        if folder.exists()
        else []
    )
    files: dict[str, str] = {}
    for name in names:
        for target in scored_targets(score_root, name):
            files.setdefault(target, name)
    return files


def stored_target_logits(score_root: Any, shard: ShardScore, target: str) -> np.ndarray:
    """A target's logits over one scored shard, in the shard's molecule order."""
    name = shard.files[target]
    held = scored_targets(score_root, name)
    return target_logits(score_root, [name], held.index(target))[0]


def known_active_pairs(
    score_root: Any,
    library_root: Any,
    shards: Sequence[ShardScore],
    parts: Sequence[LibraryPart],
    target: str,
    actives: set[str],
) -> pd.DataFrame:
    """Every library molecule's logit for ``target`` and whether its content id (``feature_id``) is a known active."""
    logits, flags = [], []
    for shard, part in zip(shards, parts):
        logits.append(stored_target_logits(score_root, shard, target))
        flags.append(read_part(part, library_root)["feature_id"].isin(actives).to_numpy())
    return pd.DataFrame({"target_id": target, "logit": np.concatenate(logits), "active": np.concatenate(flags)})


def merge_stored_top(
    score_root: Any, shards: Sequence[ShardScore], target_ids: Sequence[str], top: int, checkpoint_id: str
) -> pd.DataFrame:
    """The best ``top`` per target over stored shards (in library order), each target read from the file holding it."""

    def parts() -> Iterator[pd.DataFrame]:
        for i, shard in enumerate(shards):
            for name in dict.fromkeys(shard.files.values()):
                held = [t for t, f in shard.files.items() if f == name]
                rows = read_top(score_root, name)
                yield rows[rows["target_id"].astype(str).isin(held)].assign(shard=i)

    return rank_top(parts(), target_ids, sum(s.molecules for s in shards), top, checkpoint_id)
