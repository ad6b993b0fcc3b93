"""Fixtures of the data-layer tests (servers live in ``servers.py`` so the CLI tests can share them)."""

from drugrepo_assets_tests.data.servers import http_folder, moto_endpoint, s3_bucket

__all__ = ["http_folder", "moto_endpoint", "s3_bucket"]
