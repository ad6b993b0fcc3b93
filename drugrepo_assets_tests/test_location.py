"""location.py: the one module that says where an input lives (local path or ``file:`` URL, ``s3://`` or
``s3a://``, ``http(s)://``, a ``bundled:`` name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drugrepo_assets.files import storage_path
from drugrepo_assets.location import Location, as_location, bundled_name, is_remote, local_path, location_kind


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("s3://b/k.csv", "s3"),
        ("S3A://b/k.csv", "s3"),
        ("https://host/t.csv", "http"),
        ("HTTP://host/t.csv", "http"),
        ("data/t.csv", "local"),
        ("file:///tmp/t.csv", "local"),
        ("C:\\data\\t.csv", "local"),
    ],
)
def test_the_kind_of_a_location(text: str, kind: str) -> None:
    assert location_kind(text) == kind
    assert Location.of(text).is_s3 is (kind == "s3")
    assert Location.of(text).is_http is (kind == "http")


def test_remote_is_any_url_but_a_file_url() -> None:
    assert [is_remote(t) for t in ("s3://b/k", "https://h/x", "bundled:human", "file:///x", "x.csv", "C:\\x")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_an_s3a_location_reads_as_s3() -> None:
    location = Location.of("s3a://bucket/some/prefix/")
    assert (location.uri, location.bucket, location.key, location.s3_path) == (
        "s3://bucket/some/prefix/",
        "bucket",
        "some/prefix/",
        "bucket/some/prefix/",
    )


def test_a_bundled_name_gives_its_dataset_and_file() -> None:
    assert bundled_name("bundled:human") == ("human", "")
    assert bundled_name("bundled:human/random/train.csv") == ("human", "random/train.csv")
    assert bundled_name("human/random/train.csv") is None
    assert bundled_name("s3://bundled/human") is None


def test_the_local_path_of_a_location() -> None:
    assert local_path("file:///tmp/t.csv") == Path("/tmp/t.csv")
    assert local_path("~/t.csv") == Path.home() / "t.csv"
    assert local_path("data/t.csv") == Path("data/t.csv")
    assert local_path("s3://b/t.csv") is None
    assert local_path("bundled:human") is None


def test_a_location_carries_its_s3_endpoint_to_s3fs() -> None:
    endpoint = "http://127.0.0.1:9"
    location = Location.of("s3a://bucket/libs/v1", endpoint=endpoint)
    assert (location.endpoint, location.at("s3://bucket/libs/v1/a.smi").endpoint) == (endpoint, endpoint)
    assert storage_path(location).storage_options["endpoint_url"] == endpoint
    plain = as_location("s3://bucket/libs/v1")
    assert plain == Location.of("s3://bucket/libs/v1") and plain.endpoint is None
    assert "endpoint_url" not in storage_path("s3://bucket/libs/v1").storage_options
