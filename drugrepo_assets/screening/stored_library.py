"""Stage 1 for the Dagster stage: the library stored as raw shard tables, each file read once per version.

`store_file` streams one library file (`data.library.iter_library`) into shards (`library.iter_shards`,
the cut `drugrepo screen` makes) and writes each shard's rows (``id, smiles, file, line``) as a Parquet
table named by its content (`driver.shard_name`) under ``<root>/shards/``. Nothing is featurised here:
a tile op reads its shard back (`read_shard`) and featurises it itself, so no step's time grows with
the library. A record per file version (``<root>/files/<key>.json``; the version is the size and
modification time, or the S3 ETag) lists its shards and refused rows, so a file read before is not
read again and a library that grows by a file costs that file only. The datasets' own drugs are
stored the same way (`store_rows`).

Each shard's molecules also get their content id (`data.validate.drug_id` of the canonical SMILES,
``<root>/content/<shard>.parquet``, `write_content`), by which a dataset's known pairs are found in
any library whatever its ids (`dataset_pairs`).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from drugrepo_assets.data.library import LibraryChunk, iter_library
from drugrepo_assets.data.rules import canonical_smiles
from drugrepo_assets.data.sandbox import Sandbox, molecule_map
from drugrepo_assets.data.validate import drug_id
from drugrepo_assets.files import StoragePath, uri_of, write_bytes_atomic
from drugrepo_assets.location import Location
from drugrepo_assets.screening.driver import shard_name
from drugrepo_assets.screening.library import REJECTED_COLUMNS, LibraryShard, iter_shards

ROW_COLUMNS: tuple[str, ...] = ("id", "smiles", "file", "line")
"""A stored shard's columns: the library rows as read."""

PLAN_COLUMNS: tuple[str, ...] = ("shard", "uri", "molecules", "source")
"""A library plan's columns: one row per stored shard (`ShardRef`), in library order."""

SHARDS, FILES, CONTENT = "shards", "files", "content"


@dataclass(frozen=True)
class ShardRef:
    """One stored shard: its content name, its table's URI, its rows and the file (or source) they came from."""

    shard: str
    uri: str
    molecules: int
    source: str


def plan_table(refs: Sequence[ShardRef]) -> pd.DataFrame:
    """Stored shards as a table (`PLAN_COLUMNS`), one row per shard in library order."""
    return pd.DataFrame([asdict(r) for r in refs], columns=list(PLAN_COLUMNS)).astype({"molecules": np.int64})


def plan_refs(plan: pd.DataFrame) -> list[ShardRef]:
    """The shards a `plan_table` lists, in its order."""
    rows = plan[list(PLAN_COLUMNS)].itertuples(index=False)
    return [ShardRef(str(shard), str(uri), int(n), str(source)) for shard, uri, n, source in rows]


def _parquet(table: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _read_parquet(path: StoragePath) -> pd.DataFrame:
    with path.open("rb") as handle:
        return pd.read_parquet(handle)


def shard_path(root: StoragePath, shard: str) -> StoragePath:
    """Where shard ``shard``'s rows are stored."""
    return root / SHARDS / f"{shard}.parquet"


def write_shard(root: StoragePath, shard: LibraryShard, source: str) -> ShardRef:
    """Store a shard's rows under its content name (kept if already there: the same rows give the same name)."""
    name = shard_name(shard)
    path = shard_path(root, name)
    if not path.exists():
        rows = shard.rows[list(ROW_COLUMNS)].astype({"id": str, "smiles": str, "file": str, "line": np.int64})
        write_bytes_atomic(path, _parquet(rows))
    return ShardRef(name, uri_of(path), len(shard.rows), source)


def read_shard(root: StoragePath, shard: str) -> LibraryShard:
    """A stored shard's rows, as a `LibraryShard` (its reader refusals are the library's rejected rows, not here)."""
    rows = _read_parquet(shard_path(root, shard))
    return LibraryShard(0, rows, pd.DataFrame(columns=REJECTED_COLUMNS))


def _rejected(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    kept = [p for p in parts if len(p)]
    frame = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=REJECTED_COLUMNS)
    types = {"kind": str, "file": str, "line": np.int64, "id": str, "value": str, "reason": str}
    return frame[REJECTED_COLUMNS].astype(types)


def _store_shards(
    shards: Iterable[LibraryShard], root: StoragePath, source: str
) -> tuple[list[ShardRef], pd.DataFrame]:
    """Store each shard that holds rows; (their refs, the reader's refused rows)."""
    refs, refused = [], []
    for shard in shards:
        refused.append(shard.rejected)
        if len(shard.rows):
            refs.append(write_shard(root, shard, source))
    return refs, _rejected(refused)


@dataclass
class StoredFile:
    """A library file as stored: its shards, the rows its reader refused, and whether it was read before."""

    refs: list[ShardRef]
    rejected: pd.DataFrame
    reused: bool


def _file_key(label: str, version: str) -> str:
    return hashlib.sha256(f"{label}\n{version}".encode()).hexdigest()[:20]


def store_file(
    location: Location | str, label: str, version: str | None, root: StoragePath, shard_size: int
) -> StoredFile:
    """Store file ``label`` of library ``location`` as shards of ``shard_size`` rows, unless this
    ``version`` of it was stored before (a file of unknown version, over http(s), is read every time)."""
    record = root / FILES / f"{_file_key(label, version)}.json" if version else None
    if record is not None and record.exists():
        saved = json.loads(record.read_text())
        rejected = _rejected([_read_parquet(root / FILES / saved["rejected"])])
        return StoredFile([ShardRef(**r) for r in saved["shards"]], rejected, True)
    chunks = iter_library(location, only=label)
    refs, rejected = _store_shards(iter_shards(chunks, shard_size), root, label)
    if record is not None:
        name = record.name.replace(".json", ".rejected.parquet")
        write_bytes_atomic(root / FILES / name, _parquet(rejected))
        write_bytes_atomic(record, json.dumps({"shards": [asdict(r) for r in refs], "rejected": name}).encode())
    return StoredFile(refs, rejected, False)


def store_rows(rows: pd.DataFrame, root: StoragePath, shard_size: int, source: str) -> list[ShardRef]:
    """Store library rows held in memory (``id, smiles, file, line``: the datasets' own drugs) as shards."""
    empty = pd.DataFrame(columns=REJECTED_COLUMNS[1:])
    refs, _ = _store_shards(iter_shards([LibraryChunk(rows, empty)], shard_size), root, source)
    return refs


def cap(refs: Sequence[ShardRef], root: StoragePath, limit: int) -> list[ShardRef]:
    """The first ``limit`` rows of a library (the shard that straddles the limit cut and stored anew)."""
    out: list[ShardRef] = []
    total = 0
    for ref in refs:
        if total + ref.molecules <= limit:
            out.append(ref)
            total += ref.molecules
            continue
        if limit > total:
            rows = read_shard(root, ref.shard).rows.head(limit - total)
            out.append(write_shard(root, LibraryShard(0, rows, pd.DataFrame(columns=REJECTED_COLUMNS)), ref.source))
        break
    return out


def content_path(root: StoragePath, shard: str) -> StoragePath:
    """Where the content ids of shard ``shard``'s molecules are stored."""
    return root / CONTENT / f"{shard}.parquet"


def write_content(root: StoragePath, shard: str, rows: pd.DataFrame, sandbox: Sandbox[Any]) -> None:
    """Record each row's content id (``id, content_id``; empty where the input rules refuse the SMILES),
    its canonical SMILES parsed in ``sandbox``."""
    answers = molecule_map(canonical_smiles, rows["smiles"].astype(str).tolist(), sandbox=sandbox)
    ids = [drug_id(a[0]) if isinstance(a, tuple) and a[0] is not None else "" for a in answers]
    table = pd.DataFrame({"id": rows["id"].astype(str), "content_id": ids})
    write_bytes_atomic(content_path(root, shard), _parquet(table))


def dataset_pairs(root: StoragePath, shards: Sequence[str], targets: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """A dataset's pairs as a screen names them: ``target_id, drug_id, label`` with the screen's target ids
    (``targets``: ``target_id, feature_id``, the content id of each sequence) and the library's molecule
    ids (found by content, shard by shard), for every dataset pair (``pairs``: content ``drug_id,
    target_id, label``) whose molecule is in the library and whose target is screened."""
    screened = targets[["target_id", "feature_id"]].rename(columns={"target_id": "screen_target"})
    labels = pairs.groupby(["drug_id", "target_id"], as_index=False)["label"].max()  # 1 if any row says 1
    labelled = labels.merge(screened, left_on="target_id", right_on="feature_id", how="inner")
    wanted = set(labelled["drug_id"])
    found = []
    for shard in shards:
        content = _read_parquet(content_path(root, shard))
        found.append(content[content["content_id"].isin(wanted)])
    hits = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=["id", "content_id"])
    named = hits.merge(labelled, left_on="content_id", right_on="drug_id", how="inner")
    table = pd.DataFrame(
        {"target_id": named["screen_target"].astype(str), "drug_id": named["id"].astype(str), "label": named["label"]}
    )
    return table.drop_duplicates(["target_id", "drug_id"]).astype({"label": np.int8}).reset_index(drop=True)
