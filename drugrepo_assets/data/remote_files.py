"""Remote files: the one http(s) GET every reader makes (`http_get`), and pair-table files fetched whole
within the text limit, over http(s) (a file, or the files an HTML folder index lists) and from S3
(`s3_bytes`); where an S3 location is, and its listing, is `drugrepo_assets.location`'s."""

from __future__ import annotations

import io
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any, NamedTuple
from urllib.parse import unquote, urljoin

from drugrepo_assets.data.limits import (
    HTTP_TIMEOUT_S,
    LIMIT_VARIABLES,
    InputFileError,
    gunzip_bytes,
    read_at_most,
)
from drugrepo_assets.files import storage_path
from drugrepo_assets.location import Location, is_hidden, s3_problem

__all__ = ["http_body", "http_folder_files", "http_get", "s3_bytes"]

_MAX_HTTP_DEPTH = 8
"""Folder levels an http(s) folder index is followed down."""


def http_get(url: str, stream: bool = False) -> Any:
    """The response to a GET of ``url``; a failure or an HTTP error status is an `InputFileError`."""
    import requests

    try:
        response = requests.get(url, timeout=HTTP_TIMEOUT_S, stream=stream)
    except requests.RequestException as exc:
        raise InputFileError(url, f"cannot download ({type(exc).__name__})") from None
    if response.status_code >= 400:
        response.close()
        reason = f" {response.reason}" if response.reason else ""
        raise InputFileError(url, f"HTTP error {response.status_code}{reason}")
    return response


def http_body(url: str, limit: int) -> tuple[bytes, bool]:
    """The body of a GET (at most ``limit`` bytes, a larger ``Content-Length`` refused unread) and
    whether a ``Content-Encoding: gzip`` was undone (under the gzip cap and ``limit``)."""
    import requests
    import urllib3.exceptions

    response = http_get(url, stream=True)
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    with response:
        length = response.headers.get("Content-Length", "").strip()
        if length.isdigit() and int(length) > limit:
            raise InputFileError(
                url,
                f"Content-Length {int(length):,} bytes: more than the limit of {limit:,} bytes for a table "
                f"read whole (set {LIMIT_VARIABLES['table_bytes']} to change it)",
            )
        if encoding not in ("", "identity", "gzip", "x-gzip"):
            raise InputFileError(url, f"unsupported Content-Encoding {encoding!r} (expected gzip or none)")
        try:
            data = read_at_most(url, _RawBody(response.raw), limit)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise InputFileError(url, f"cannot download ({type(exc).__name__})") from None
    if encoding in ("", "identity"):
        return data, False
    return gunzip_bytes(url, data, limit), True


class _RawBody(io.RawIOBase):
    """A response body as sent (``Content-Encoding`` not undone), read a block at a time."""

    def __init__(self, raw: object) -> None:
        super().__init__()
        self.raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        return self.raw.read(size, decode_content=False) or b""  # type: ignore[attr-defined]


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.lower() == "a":
            for name, value in attrs:
                if name.lower() == "href" and value:
                    self.links.append(value)


def http_folder_files(location: str, keep: Callable[[str], bool], listed: str) -> list[tuple[str, str]]:
    """The files ``keep`` takes (by relative path) of the HTML folder index at ``location``, recursively:
    (relative path, URL), sorted; hidden files and folders left out. ``listed``: the suffixes taken, for
    messages."""
    base = location if location.endswith("/") else location + "/"
    found: dict[str, str] = {}
    _http_walk(_Walk(location, base, keep, listed, found, set()), base, depth=0)
    if not found:
        raise InputFileError(location, f"no data files ({listed}) listed in the folder index at this URL")
    return sorted(found.items())


class _Walk(NamedTuple):
    """One walk of an HTML folder index: what it was asked for and what it found."""

    location: str
    base: str
    keep: Callable[[str], bool]
    listed: str
    found: dict[str, str]
    visited: set[str]


def _http_walk(walk: _Walk, folder: str, depth: int) -> None:
    """Collect the data files of an HTML folder index: only links strictly below ``folder`` are
    followed (never ``../`` or an absolute link elsewhere), each folder fetched at most once."""
    walk.visited.add(folder)
    response = http_get(folder)
    if "html" not in response.headers.get("Content-Type", "").lower():
        raise InputFileError(
            walk.location,
            f"not a data file ({walk.listed}) and not an HTML folder index",
        )
    parser = _LinkParser()
    parser.feed(response.text)
    for link in parser.links:
        target = urljoin(folder, link).split("#", 1)[0].split("?", 1)[0]
        if not target.startswith(folder) or target == folder or target in walk.visited:
            continue
        rel = unquote(target[len(walk.base) :])
        if any(part in ("", ".", "..") for part in rel.rstrip("/").split("/")):
            continue
        if target.endswith("/"):
            if depth < _MAX_HTTP_DEPTH and not is_hidden(rel):
                _http_walk(walk, target, depth + 1)
        elif walk.keep(rel) and not is_hidden(rel):
            walk.visited.add(target)
            walk.found[rel] = target


def s3_bytes(location: Location, limit: int) -> bytes:
    """The S3 object ``location`` whole, refused past ``limit`` bytes (its size asked first, then at most one byte more read)."""
    uri, bucket, key = location.text, location.bucket, location.key
    if not bucket or not key:
        raise InputFileError(uri, "not an S3 object URI (expected s3://bucket/key)")
    fs = storage_path(location).fs
    try:
        size = int(fs.size(f"{bucket}/{key}") or 0)
        if size > limit:
            raise InputFileError(
                uri,
                f"{size:,} bytes: more than the limit of {limit:,} bytes for a table read whole "
                f"(set {LIMIT_VARIABLES['table_bytes']} to change it)",
            )
        if not size:
            return b""
        data = fs.cat_file(f"{bucket}/{key}", start=0, end=limit + 1)
        if len(data) > limit:  # grown since its size was asked
            raise InputFileError(
                uri,
                f"over {limit:,} bytes: more than the limit of {limit:,} bytes for a table read whole "
                f"(set {LIMIT_VARIABLES['table_bytes']} to change it)",
            )
        return data
    except InputFileError:
        raise
    except Exception as exc:  # s3fs and botocore raise many types; s3_problem names them
        raise InputFileError(uri, s3_problem(exc, fs, bucket)) from None
