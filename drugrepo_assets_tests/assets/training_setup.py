"""Shared set-up of the training-stage tests: a small dataset folder and resources under one tmp folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drugrepo_assets.io_managers import JsonIOManager, ParquetIOManager
from drugrepo_assets.resources import (
    TINY_PROFILE,
    DataSourceResource,
    HpoSettings,
    MlflowTracking,
    ScreeningSettings,
    SplitSettings,
    TrainingProfile,
)
from drugrepo_assets.storage import StorageResource
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
    """Every resource of the location, all files under ``base``; MLflow in a SQLite file unless given."""
    return {
        "io_manager": ParquetIOManager(base_path=str(base / "storage")),
        "json_io_manager": JsonIOManager(base_path=str(base / "storage")),
        "data_source": DataSourceResource(root=str(source_root)),
        "split_settings": SplitSettings(seed=0),
        "training_profile": profile,
        "storage": StorageResource(base_path=str(base / "storage")),
        "mlflow_tracking": MlflowTracking(
            tracking_uri=tracking_uri or f"sqlite:///{base / 'mlflow.db'}",
            artifact_location=None if tracking_uri else str(base / "mlflow-artifacts"),
        ),
        "hpo_settings": HpoSettings(storage_url=f"sqlite:///{base / 'optuna.db'}"),
        "screening": ScreeningSettings(),
    }
