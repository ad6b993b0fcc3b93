"""Shared set-up of the training-stage tests: a small dataset folder and resources under one tmp folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drugrepo_assets.lib.environments import asset_resources
from drugrepo_assets.lib.resources import TINY_PROFILE, DataSourceResource, MlflowTracking, TrainingProfile
from drugrepo_assets_tests.data.rows import real_rows, write_csv

SMALL_ROWS = 420
"""Rows of the bundled human training file in the small dataset: ~290 train, ~40 val, ~80 test pairs."""


def small_dataset(
    root: Path, dataset: str = "human", rows: int = SMALL_ROWS, extra: Sequence[Sequence[str]] = ()
) -> Path:
    """Write ``<root>/<dataset>/pairs.csv``: the first ``rows`` bundled human pairs plus ``extra`` rows."""
    pairs = [*real_rows("human/random/train.csv", range(1, rows + 1)), *extra]
    return write_csv(root / dataset / "pairs.csv", pairs)


def resources(
    base: Path,
    source_root: Path,
    profile: TrainingProfile = TINY_PROFILE,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """The local environment's resources with every file under ``base``, data from ``source_root``, ``profile``'s
    training; MLflow in a SQLite file under ``base`` unless ``tracking_uri`` names a server."""
    tracking = {"mlflow_tracking": MlflowTracking(tracking_uri=tracking_uri)} if tracking_uri else {}
    return asset_resources(
        "local", base, data_source=DataSourceResource(root=str(source_root)), training_profile=profile, **tracking
    )
