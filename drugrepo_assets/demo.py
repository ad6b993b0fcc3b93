"""Materialise every asset and check for every dataset partition into the persistent instance.

``python -m drugrepo_assets.demo`` (what ``make demo`` runs) executes `materialize_all_job` once per
dataset on the bundled data, records the runs in ``$DAGSTER_HOME`` (so ``make dev`` shows them),
exits non-zero when a run or a check fails, and prints rows per stage and where the tables are.
"""

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import DagsterError, DagsterInstance, ExecuteInProcessResult

from drugrepo_assets.definitions import defs, materialize_all_job
from drugrepo_assets.partitions import dataset_partitions

_STAGES = ("raw_pairs", "validated_pairs", "rejected_pairs", "dataset_splits")
_FIXED_STRATEGIES = ("random", "cold_drug", "cold_target")
_QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class PartitionReport:
    """What one run produced for one dataset: rows per asset, split counts, paths, problems."""

    dataset: str
    run_id: str
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)
    split_rows: dict[str, int] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def run_partition(instance: DagsterInstance, dataset: str) -> PartitionReport:
    """Execute `materialize_all_job` for one dataset and collect what it materialised and checked."""
    job = defs.resolve_job_def(materialize_all_job.name)
    started = time.perf_counter()
    result = job.execute_in_process(
        run_config=_QUIET_CONSOLE, instance=instance, partition_key=dataset, raise_on_error=False
    )
    report = PartitionReport(dataset, result.run_id, time.perf_counter() - started)
    _collect(result, report)
    return report


def _collect(result: ExecuteInProcessResult, report: PartitionReport) -> None:
    for event in result.get_asset_materialization_events():
        name = event.asset_key.to_user_string()
        metadata: dict[str, Any] = {k: v.value for k, v in event.materialization.metadata.items()}
        report.rows[name] = int(metadata.get("dagster/row_count", 0))
        if "path" in metadata:
            report.paths[name] = str(metadata["path"])
        if name == "dataset_splits":
            for strategy, splits in metadata.get("counts", {}).items():
                report.split_rows[strategy] = sum(int(n) for n in splits.values())
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            key = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            report.problems.append(f"check {key} failed: {evaluation.description or ''}".rstrip(": "))
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            message = data.user_failure_data.description
        else:
            message = data.error.message.strip().splitlines()[0] if data.error else "unknown error"
        report.problems.append(f"step {event.step_key} failed: {message}")
    missing = [stage for stage in _STAGES if stage not in report.rows]
    if missing:
        report.problems.append(f"not materialised: {', '.join(missing)}")
    if not result.success and not report.problems:
        report.problems.append("run failed")


def summary(reports: list[PartitionReport]) -> str:
    """Plain-text table of rows per stage and dataset, then the storage paths of the tables."""
    header = ["dataset", "raw", "valid", "rejected", *_FIXED_STRATEGIES, "shipped splits", "run s"]
    lines = []
    for r in reports:
        shipped = ", ".join(
            f"{s.removeprefix('shipped_')} {n}"
            for s, n in sorted(r.split_rows.items())
            if s.startswith("shipped_")
        )
        lines.append(
            [
                r.dataset,
                *(str(r.rows.get(stage, "-")) for stage in _STAGES[:3]),
                *(str(r.split_rows.get(s, "-")) for s in _FIXED_STRATEGIES),
                shipped or "-",
                f"{r.seconds:.1f}",
            ]
        )
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in [header, *lines]
    ]
    text.append("")
    text.append("random .. shipped: rows (train + val + test) of each split strategy")
    text.append("tables (Parquet, one file per dataset):")
    for stage in _STAGES:
        found = [r.paths[stage] for r in reports if stage in r.paths]
        if found:
            text.append(f"  {stage:<16} {Path(found[0]).parent}/<dataset>.parquet")
    return "\n".join(text)


def main() -> int:
    """Run the demo; 0 when every run and check passed, 1 when one failed, 2 without an instance."""
    started = time.perf_counter()
    try:
        instance = DagsterInstance.get()
    except DagsterError as exc:
        print(f"cannot open the Dagster instance ({exc}); use `make demo` or set DAGSTER_HOME", file=sys.stderr)
        return 2
    with instance:
        reports = []
        for dataset in dataset_partitions.get_partition_keys():
            print(f"materialising {dataset} ...", flush=True)
            reports.append(run_partition(instance, dataset))
        home = instance.root_directory
    print(summary(reports))
    print(f"  runs recorded in {home} (open them with `make dev`)")
    problems = [f"{r.dataset}: {p}" for r in reports for p in r.problems]
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    verdict = "FAILED" if problems else "all assets materialised, all checks passed"
    print(f"{len(reports)} runs: {verdict} ({time.perf_counter() - started:.1f} s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
