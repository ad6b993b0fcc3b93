"""Drift of the model's inputs, with Evidently (0.7 API): descriptors of a reference set (the training
pairs) against a current set (newly landed pairs, or the pairs the API was asked about).

Columns are the descriptors of `ml.features.descriptors` (molecular weight, logP, TPSA, ring counts, heavy
atoms; protein length and residue-group shares). Evidently picks each column's test by sample size
(K-S p-value for small samples, normalised Wasserstein distance for large ones); the set has drifted
when at least ``drift_share`` of its columns have. The same comparison serves the champion/challenger
asset on one column, the scores the two versions gave on live traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from drugrepo_assets.lib.records import ColumnDrift, DriftSummary
from drugrepo_assets.ml.features.descriptors import DESCRIPTOR_COLUMNS


def _column_drift(config: dict[str, Any], value: float) -> ColumnDrift:
    method, threshold = str(config.get("method", "")), float(config.get("threshold", 0.05))
    drifted = value < threshold if "p_value" in method else value >= threshold
    return ColumnDrift(method=method, score=float(value), threshold=threshold, drifted=bool(drifted))


def compare(
    name: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    drift_share: float = 0.5,
    min_rows: int = 5,
    columns: Sequence[str] = DESCRIPTOR_COLUMNS,
) -> tuple[DriftSummary, str | None]:
    """Evidently's data-drift preset on ``columns`` (the descriptors by default) present on both sides:
    (summary, report HTML or None when too few rows)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = [c for c in columns if c in reference.columns and c in current.columns]
    ref = reference[columns].dropna()
    cur = current[columns].dropna()
    summary = DriftSummary(name=name, reference_rows=len(ref), current_rows=len(cur), drift_share=drift_share)
    if len(ref) < min_rows or len(cur) < min_rows:
        summary.note = f"too few rows to compare (reference {len(ref)}, current {len(cur)}, need {min_rows})"
        return summary, None
    definition = DataDefinition(numerical_columns=columns)
    snapshot = Report([DataDriftPreset(drift_share=drift_share)]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith("DriftedColumnsCount"):
            summary.share_drifted = float(metric["value"]["share"])
        elif kind.endswith("ValueDrift") and config.get("column") in columns:
            summary.columns[config["column"]] = _column_drift(config, float(metric["value"]))
    summary.dataset_drift = summary.share_drifted >= drift_share
    return summary, snapshot.get_html_str(as_iframe=False)
