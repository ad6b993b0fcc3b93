"""Fixtures of the CLI tests: the moto S3 server and a fresh bucket (shared with the data tests)."""

from drugrepo_assets_tests.data.servers import moto_endpoint, s3_bucket

__all__ = ["moto_endpoint", "s3_bucket"]
