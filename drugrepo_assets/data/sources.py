"""Readers for drug–target pair tables: one file or a folder, on local disk, over http(s) or on S3.

Every reader returns the raw table as strings (nothing coerced, empty cells are ``""``) with the
required columns ``SMILES``, ``Protein``, ``Y`` plus ``source_file`` and ``source_row`` so that every
row can be traced back to its file. Any problem with a file is an :class:`InputFileError`.

A pair table is held whole (validation compares every row with every other), so it is read under
`ReadLimits` (``data/limits.py``): its text (a CSV's bytes after gzip, a Parquet file's values), its rows
and its cells (rows × columns), a folder's files together; a Parquet file's rows, cells and column sizes
are checked from its metadata before any row is read (``data/parquet_table.py``), and a CSV is decoded a
block at a time, its text never held whole (``data/csv_table.py``). Where a location is, and its files,
is `drugrepo_assets.location`'s; http(s) and S3 files are fetched by ``data/remote_files.py``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

import pandas as pd

from drugrepo_assets.data.csv_table import parse_csv, parse_gzip_csv
from drugrepo_assets.data.limits import InputFileError, TableBudget, read_limits
from drugrepo_assets.data.parquet_table import parse_parquet
from drugrepo_assets.data.remote_files import http_body, http_folder_files, s3_bytes
from drugrepo_assets.files import storage_path
from drugrepo_assets.location import Location, as_location, folder_files, is_hidden, prefix_files, s3_problem

__all__ = [
    "DATASETS",
    "DATA_SUFFIXES",
    "REQUIRED_COLUMNS",
    "bundled_root",
    "dataset_location",
    "is_data_file",
    "read_source",
    "read_table",
]

DATASETS: tuple[str, ...] = ("bindingdb", "biosnap", "human")
REQUIRED_COLUMNS: tuple[str, ...] = ("SMILES", "Protein", "Y")
DATA_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet", ".pq")

_SUFFIX_TEXT = ", ".join(DATA_SUFFIXES)


def bundled_root() -> Path:
    """The folder of the DrugBAN benchmark files shipped inside the package."""
    return Path(str(resources.files("drugrepo_assets") / "bundled" / "drugban"))


def dataset_location(root: str, dataset: str) -> str:
    """Location of one dataset under ``root``: ``"bundled"`` or any folder, URL or S3 prefix."""
    if root == "bundled":
        folder = bundled_root() / dataset
        if not folder.is_dir():
            known = ", ".join(p.name for p in sorted(bundled_root().iterdir()) if p.is_dir())
            raise ValueError(f"no bundled dataset {dataset!r} (bundled: {known})")
        return str(folder)
    return root.rstrip("/") + "/" + dataset


def is_data_file(name: str) -> bool:
    """True when ``name`` ends with one of the readable suffixes (.csv, .csv.gz, .parquet, .pq)."""
    lowered = name.lower()
    return any(lowered.endswith(s) for s in DATA_SUFFIXES)


def read_table(
    location: Location | str,
    *,
    required: Sequence[str] = REQUIRED_COLUMNS,
    keep_order: bool = False,
) -> pd.DataFrame:
    """Read one CSV or Parquet file (local path, http(s) URL or ``s3://bucket/key``) as strings.

    Adds ``source_file`` (the location) and ``source_row`` (1-based data row, header not counted).
    ``required``: the columns the file must have; they come first unless ``keep_order`` keeps the
    file's own column order. S3 is reached through s3fs (`drugrepo_assets.files.storage_path`), on the
    location's `Location.endpoint` (a plain string: AWS or ``$AWS_ENDPOINT_URL_S3``).
    The file is held whole, so it is read under `read_limits` (a file past one is refused, named).
    """
    budget = TableBudget(read_limits())
    return _read_table(as_location(location), budget, tuple(required), keep_order)


def read_source(
    location: Location | str,
    *,
    required: Sequence[str] = REQUIRED_COLUMNS,
    keep_order: bool = False,
) -> pd.DataFrame:
    """Read a file, a local folder, an http(s) file or folder index, or an S3 key or prefix.

    Folders and prefixes are read recursively in sorted relative-path order; ``source_file`` is
    then the path relative to the folder (e.g. ``random/train.csv``). ``required`` and
    ``keep_order`` as for :func:`read_table`; each file must have the required columns. A folder's
    files share one `read_limits` budget: the file that passes it is refused, named.
    """
    where = as_location(location)
    location = where.text
    required = tuple(required)
    budget = TableBudget(read_limits())

    def table(uri: str) -> pd.DataFrame:
        return _read_table(where.at(uri), budget, required, keep_order)

    def tables(parts: list[tuple[str, str]]) -> pd.DataFrame:
        return _concat(location, [(rel, table(uri)) for rel, uri in parts], required, keep_order)

    if where.is_s3:
        if where.key and not where.key.endswith("/") and is_data_file(where.key):
            return table(location)
        return tables(_s3_members(where))
    if where.is_http:
        if is_data_file(urlparse(location).path):
            return table(location)
        return tables(http_folder_files(location, is_data_file, _SUFFIX_TEXT))
    path = where.path()
    if path.is_dir():
        files = [(rel, str(p)) for rel, p in folder_files(path) if is_data_file(p.name) and not is_hidden(rel)]
        if not files:
            raise InputFileError(location, f"folder holds no data files ({_SUFFIX_TEXT})")
        return tables(files)
    return table(location)


def _read_table(where: Location, budget: TableBudget, required: tuple[str, ...], keep_order: bool) -> pd.DataFrame:
    """One file of a pair table, its bytes counted in ``budget``: http(s) and S3 bodies are fetched
    (at most the text limit), a local file is read as a stream."""
    location = where.text
    limit = budget.limits.table_bytes
    decoded = False
    source: bytes | Path
    if where.is_http:
        name = urlparse(location).path
        _check_suffix(location, name)
        source, decoded = http_body(location, limit)
    elif where.is_s3:
        name = location
        _check_suffix(location, name)
        source = s3_bytes(where, limit)
    else:
        source = where.path()
        name = source.name
        if source.is_dir():
            raise InputFileError(location, "is a folder, not a file")
        if source.exists():
            _check_suffix(location, name)
    table = _parse(location, name, source, budget, gzip_decoded=decoded, required=required, keep_order=keep_order)
    budget.files += 1
    return table


def _open_local(location: str, path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        problem = "file not found" if is_data_file(path.name) else "no such file or folder"
        raise InputFileError(location, problem) from None
    except IsADirectoryError:
        raise InputFileError(location, "is a folder, not a file") from None
    except PermissionError:
        raise InputFileError(location, "permission denied") from None
    except OSError as exc:
        raise InputFileError(location, f"cannot read file ({exc.strerror or exc})") from None


def _s3_members(where: Location) -> list[tuple[str, str]]:
    """The data files below an S3 prefix (recursively, sorted; hidden ones left out): (relative key, URI)."""
    uri, bucket, key = where.text, where.bucket, where.key
    if not bucket:
        raise InputFileError(uri, "not an S3 URI (expected s3://bucket/prefix)")
    folder = f"{bucket}/{key.strip('/')}" if key.strip("/") else bucket
    fs = storage_path(where).fs
    try:
        found = prefix_files(fs, folder)
    except Exception as exc:  # s3fs and botocore raise many types; s3_problem names them
        raise InputFileError(uri, s3_problem(exc, fs, bucket)) from None
    members = [(rel, full) for rel, full in found if is_data_file(rel) and not is_hidden(rel)]
    if not members:
        raise InputFileError(uri, f"no data files ({_SUFFIX_TEXT}) under this S3 prefix")
    return members


def _concat(
    location: str,
    parts: list[tuple[str, pd.DataFrame]],
    required: Sequence[str] = REQUIRED_COLUMNS,
    keep_order: bool = False,
) -> pd.DataFrame:
    frames = []
    for rel, frame in parts:
        frame["source_file"] = rel
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True, sort=False)
    extras = [c for c in table.columns if c not in (*required, "source_file", "source_row")]
    for column in extras:
        table[column] = table[column].fillna("")
    if keep_order:
        return table[
            [*[c for c in table.columns if c not in ("source_file", "source_row")], "source_file", "source_row"]
        ]
    return table[[*required, *extras, "source_file", "source_row"]]


def _check_suffix(location: str, name: str) -> None:
    if not is_data_file(name):
        raise InputFileError(location, f"unsupported file type (expected {_SUFFIX_TEXT})")


def _parse(
    location: str,
    name: str,
    source: bytes | Path,
    budget: TableBudget,
    *,
    gzip_decoded: bool = False,
    required: Sequence[str] = REQUIRED_COLUMNS,
    keep_order: bool = False,
) -> pd.DataFrame:
    lowered = name.lower()
    with io.BytesIO(source) if isinstance(source, bytes) else _open_local(location, source) as stream:
        size = len(source) if isinstance(source, bytes) else os.fstat(stream.fileno()).st_size
        if not size:
            raise InputFileError(location, "empty file")
        gz = lowered.endswith(".csv.gz") and not (
            gzip_decoded and isinstance(source, bytes) and not source.startswith(b"\x1f\x8b")
        )
        if lowered.endswith((".parquet", ".pq")):
            budget.check_size(location, size)
            table = parse_parquet(location, stream, budget)
        elif gz:
            table = parse_gzip_csv(location, stream, budget)
        else:
            budget.check_size(location, size)
            table = parse_csv(location, stream, budget)
    missing = [c for c in required if c not in table.columns]
    if missing:
        found = ", ".join(str(c) for c in table.columns) or "no columns"
        names = ", ".join(repr(c) for c in missing)
        label = "column" if len(missing) == 1 else "columns"
        raise InputFileError(location, f"missing {label} {names} (found: {found})")
    if len(table) == 0:
        raise InputFileError(location, "no data rows (only a header)")
    if not keep_order:
        extras = [c for c in table.columns if c not in (*required, "source_file", "source_row")]
        table = table[[*required, *extras]]
    table = table.copy()
    table["source_file"] = location
    table["source_row"] = pd.RangeIndex(1, len(table) + 1).to_numpy(dtype="int64")
    return table.reset_index(drop=True)
