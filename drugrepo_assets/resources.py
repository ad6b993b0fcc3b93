"""Configurable resources of the asset code location: where raw pairs come from, split settings."""

from __future__ import annotations

from typing import Optional

import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field

from drugrepo_assets.data.sources import dataset_location, read_source


class DataSourceResource(ConfigurableResource):
    """Where `raw_pairs` reads each dataset partition from.

    `root` is ``"bundled"`` (the benchmark sample shipped in the package), a local folder, an
    http(s) URL prefix or an ``s3://`` prefix; a partition reads ``<root>/<dataset>``.
    """

    root: str = Field(
        default="bundled",
        description='"bundled", a local folder, an http(s) URL prefix or an s3:// prefix; '
        "each dataset partition is read from <root>/<dataset>.",
    )
    s3_endpoint_url: Optional[str] = Field(
        default=None,
        description="S3 endpoint to use instead of AWS (MinIO, moto, ...); None for AWS.",
    )

    def location(self, dataset: str) -> str:
        """The file, folder, URL or S3 prefix that holds one dataset partition."""
        return dataset_location(self.root, dataset)

    def read(self, dataset: str) -> pd.DataFrame:
        """Read one dataset partition as strings; raises `InputFileError` for an unusable file."""
        return read_source(self.location(dataset), s3_endpoint_url=self.s3_endpoint_url)


class SplitSettings(ConfigurableResource):
    """Settings of the train/val/test splits, so that a split can be reproduced from its seed."""

    seed: int = Field(default=0, description="Random seed of the random and cold splits.")
