"""Readers for drug–target pair tables: one file or a folder, on local disk, over http(s) or on S3.

Every reader returns the raw table as strings (nothing coerced, empty cells are ``""``) with the
required columns ``SMILES``, ``Protein``, ``Y`` plus ``source_file`` and ``source_row`` so that every
row can be traced back to its file. Any problem with a file is an :class:`InputFileError`.
"""

from __future__ import annotations

import gzip
import io
import re
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pandas as pd

__all__ = [
    "DATASETS",
    "DATA_SUFFIXES",
    "REQUIRED_COLUMNS",
    "InputFileError",
    "bundled_root",
    "dataset_location",
    "is_data_file",
    "read_source",
    "read_table",
]

DATASETS: tuple[str, ...] = ("bindingdb", "biosnap", "human")
REQUIRED_COLUMNS: tuple[str, ...] = ("SMILES", "Protein", "Y")
DATA_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet", ".pq")

HTTP_TIMEOUT_S = 60.0
_MAX_HTTP_DEPTH = 8
_SUFFIX_TEXT = ", ".join(DATA_SUFFIXES)


class InputFileError(Exception):
    """A source file that cannot be used at all; ``str(e)`` is one line: ``<path>: <problem>``."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


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


def read_table(location: str, *, s3_endpoint_url: str | None = None) -> pd.DataFrame:
    """Read one CSV or Parquet file (local path, http(s) URL or ``s3://bucket/key``) as strings.

    Adds ``source_file`` (the location) and ``source_row`` (1-based data row, header not counted).
    """
    location = str(location)
    kind = _kind(location)
    decoded = False
    if kind == "http":
        name = urlparse(location).path
        _check_suffix(location, name)
        response = _http_get(location)
        data = response.content
        decoded = "gzip" in response.headers.get("Content-Encoding", "").lower()
    elif kind == "s3":
        name = location
        _check_suffix(location, name)
        data = _s3_bytes(location, s3_endpoint_url)
    else:
        path = _local_path(location)
        name = path.name
        if path.is_dir():
            raise InputFileError(location, "is a folder, not a file")
        if path.exists():
            _check_suffix(location, name)
        data = _local_bytes(location, path)
    return _parse(location, name, data, source_file=location, gzip_decoded=decoded)


def read_source(location: str, *, s3_endpoint_url: str | None = None) -> pd.DataFrame:
    """Read a file, a local folder, an http(s) file or folder index, or an S3 key or prefix.

    Folders and prefixes are read recursively in sorted relative-path order; ``source_file`` is
    then the path relative to the folder (e.g. ``random/train.csv``).
    """
    location = str(location)
    kind = _kind(location)
    if kind == "s3":
        _bucket, key = _split_s3(location)
        if key and not key.endswith("/") and is_data_file(key):
            return read_table(location, s3_endpoint_url=s3_endpoint_url)
        members = _s3_members(location, s3_endpoint_url)
        return _concat(
            location,
            [(rel, read_table(uri, s3_endpoint_url=s3_endpoint_url)) for rel, uri in members],
        )
    if kind == "http":
        if is_data_file(urlparse(location).path):
            return read_table(location)
        members = _http_members(location)
        return _concat(location, [(rel, read_table(url)) for rel, url in members])
    path = _local_path(location)
    if path.is_dir():
        files = sorted(
            (p.relative_to(path).as_posix(), p)
            for p in path.rglob("*")
            if p.is_file() and is_data_file(p.name) and not _hidden(p.relative_to(path))
        )
        if not files:
            raise InputFileError(location, f"folder holds no data files ({_SUFFIX_TEXT})")
        return _concat(location, [(rel, read_table(str(p))) for rel, p in files])
    return read_table(location)


def _kind(location: str) -> str:
    scheme = urlparse(location).scheme.lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme == "s3":
        return "s3"
    return "local"


def _local_path(location: str) -> Path:
    parsed = urlparse(location)
    if parsed.scheme.lower() == "file":
        return Path(unquote(parsed.path))
    return Path(location).expanduser()


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _local_bytes(location: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        problem = "file not found" if is_data_file(path.name) else "no such file or folder"
        raise InputFileError(location, problem) from None
    except IsADirectoryError:
        raise InputFileError(location, "is a folder, not a file") from None
    except PermissionError:
        raise InputFileError(location, "permission denied") from None
    except OSError as exc:
        raise InputFileError(location, f"cannot read file ({exc.strerror or exc})") from None


def _http_get(url: str):
    import requests

    try:
        response = requests.get(url, timeout=HTTP_TIMEOUT_S)
    except requests.RequestException as exc:
        raise InputFileError(url, f"cannot download ({type(exc).__name__})") from None
    if response.status_code >= 400:
        reason = f" {response.reason}" if response.reason else ""
        raise InputFileError(url, f"HTTP error {response.status_code}{reason}")
    return response


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.lower() == "a":
            for name, value in attrs:
                if name.lower() == "href" and value:
                    self.links.append(value)


def _http_members(location: str) -> list[tuple[str, str]]:
    base = location if location.endswith("/") else location + "/"
    found: dict[str, str] = {}
    _http_walk(location, base, base, found, depth=0)
    if not found:
        raise InputFileError(
            location, f"no data files ({_SUFFIX_TEXT}) listed in the folder index at this URL"
        )
    return sorted(found.items())


def _http_walk(location: str, base: str, folder: str, found: dict[str, str], depth: int) -> None:
    response = _http_get(folder)
    if "html" not in response.headers.get("Content-Type", "").lower():
        raise InputFileError(
            location,
            f"not a data file ({_SUFFIX_TEXT}) and not an HTML folder index",
        )
    parser = _LinkParser()
    parser.feed(response.text)
    for link in parser.links:
        target = urljoin(folder, link).split("#", 1)[0].split("?", 1)[0]
        if not target.startswith(base) or target == folder:
            continue
        rel = unquote(target[len(base):])
        if target.endswith("/"):
            if depth < _MAX_HTTP_DEPTH and not _hidden(Path(rel)):
                _http_walk(location, base, target, found, depth + 1)
        elif is_data_file(rel) and not _hidden(Path(rel)):
            found[rel] = target


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def _s3_client(endpoint_url: str | None):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url)


def _s3_problem(exc: Exception) -> str:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            return "no such S3 key"
        if code == "NoSuchBucket":
            return "no such S3 bucket"
        if code in ("AccessDenied", "403"):
            return "access denied"
        message = str(error.get("Message", "")).strip()
        return f"S3 error {code}" + (f": {message}" if message else "")
    if isinstance(exc, BotoCoreError):
        return f"S3 error: {exc}"
    return f"S3 error: {type(exc).__name__}"


def _s3_bytes(uri: str, endpoint_url: str | None) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = _split_s3(uri)
    if not bucket or not key:
        raise InputFileError(uri, "not an S3 object URI (expected s3://bucket/key)")
    try:
        return _s3_client(endpoint_url).get_object(Bucket=bucket, Key=key)["Body"].read()
    except (BotoCoreError, ClientError) as exc:
        raise InputFileError(uri, _s3_problem(exc)) from None


def _s3_members(uri: str, endpoint_url: str | None) -> list[tuple[str, str]]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = _split_s3(uri)
    if not bucket:
        raise InputFileError(uri, "not an S3 URI (expected s3://bucket/prefix)")
    prefix = key.rstrip("/") + "/" if key else ""
    members: list[tuple[str, str]] = []
    try:
        pages = _s3_client(endpoint_url).get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix):]
                if rel and is_data_file(rel) and not _hidden(Path(rel)):
                    members.append((rel, f"s3://{bucket}/{obj['Key']}"))
    except (BotoCoreError, ClientError) as exc:
        raise InputFileError(uri, _s3_problem(exc)) from None
    if not members:
        raise InputFileError(uri, f"no data files ({_SUFFIX_TEXT}) under this S3 prefix")
    return sorted(members)


def _concat(location: str, parts: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    frames = []
    for rel, frame in parts:
        frame["source_file"] = rel
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True, sort=False)
    extras = [c for c in table.columns if c not in (*REQUIRED_COLUMNS, "source_file", "source_row")]
    for column in extras:
        table[column] = table[column].fillna("")
    return table[[*REQUIRED_COLUMNS, *extras, "source_file", "source_row"]]


def _check_suffix(location: str, name: str) -> None:
    if not is_data_file(name):
        raise InputFileError(location, f"unsupported file type (expected {_SUFFIX_TEXT})")


def _parse(
    location: str, name: str, data: bytes, *, source_file: str, gzip_decoded: bool = False
) -> pd.DataFrame:
    lowered = name.lower()
    if not data:
        raise InputFileError(location, "empty file")
    if lowered.endswith(".csv.gz") and not (gzip_decoded and not data.startswith(b"\x1f\x8b")):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            raise InputFileError(location, "not a valid gzip file") from None
        if not data:
            raise InputFileError(location, "empty file")
    if lowered.endswith((".parquet", ".pq")):
        table = _parse_parquet(location, data)
    else:
        table = _parse_csv(location, data)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        found = ", ".join(str(c) for c in table.columns) or "no columns"
        names = ", ".join(repr(c) for c in missing)
        label = "column" if len(missing) == 1 else "columns"
        raise InputFileError(location, f"missing {label} {names} (found: {found})")
    if len(table) == 0:
        raise InputFileError(location, "no data rows (only a header)")
    extras = [c for c in table.columns if c not in (*REQUIRED_COLUMNS, "source_file", "source_row")]
    table = table[[*REQUIRED_COLUMNS, *extras]].copy()
    table["source_file"] = source_file
    table["source_row"] = pd.RangeIndex(1, len(table) + 1).to_numpy(dtype="int64")
    return table.reset_index(drop=True)


def _parse_csv(location: str, data: bytes) -> pd.DataFrame:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        byte = data[offset]
        raise InputFileError(
            location, f"not valid UTF-8 text (byte 0x{byte:02x} at offset {offset})"
        ) from None
    if not text.strip():
        raise InputFileError(location, "empty file")
    if "\x00" in text:
        raise InputFileError(location, f"not a CSV text file (NUL byte at offset {text.index(chr(0))})")
    try:
        table = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, engine="c"
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        detail = re.sub(r"\s+", " ", str(exc)).strip().rstrip(".")
        raise InputFileError(location, f"cannot parse CSV ({detail})") from None
    return table.fillna("")


def _parse_parquet(location: str, data: bytes) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data)).to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        detail = re.sub(r"\s+", " ", str(exc)).strip().rstrip(".")
        raise InputFileError(location, f"cannot parse Parquet ({detail})") from None
    table.columns = [str(c) for c in table.columns]
    for column in table.columns:
        table[column] = table[column].map(_as_text).astype(object)
    return table


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
