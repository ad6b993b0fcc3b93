"""Declarative automation: validation, splits and features refresh on their own after new raw data.

`REFRESH` (``AutomationCondition.eager()``) is set on `validated_pairs` / `rejected_pairs`,
`dataset_splits`, `drug_graphs` and `protein_encodings`, so that a new `raw_pairs` partition (from
`landing_sensor`) flows through validation, the splits and the features in the runs the automation
sensor launches. The checks have no condition of their own on purpose: checks without one ride along
in every run of their asset, so the blocking gates still stop a bad table, and no check-only runs
follow. Training is not eager:
`retrain_sensor` applies an explicit policy. Automation conditions are only evaluated by an
automation condition sensor, which Dagster creates *stopped*; `automation_sensor` targets every asset
with a condition and is declared running, so `dagster dev` (daemon included) evaluates them at once.
"""

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

REFRESH = AutomationCondition.eager()
"""Materialise a partition when a parent partition updates (and none of its parents is missing or running)."""

automation_sensor = AutomationConditionSensorDefinition(
    "automation_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the automation conditions of every asset and check (validation, splits, features).",
)
