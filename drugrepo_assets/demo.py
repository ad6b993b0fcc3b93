"""Materialise every asset and check for every dataset partition into the persistent instance.

``python -m drugrepo_assets.demo`` (what ``make demo`` runs) executes `materialize_all_job` once per
dataset on the bundled data, training included (the ``demo`` profile unless ``--profile`` names
another), then the screening stage (`screening_inputs_job` once, `screening_job` per dataset),
records the runs in ``$DAGSTER_HOME`` (so ``make dev`` shows them), exits non-zero when a run or a
check fails, and prints rows per stage, val/test AUROC, checkpoints, MLflow runs and the best
candidate of each target.
"""

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import DagsterError, DagsterInstance, ExecuteInProcessResult

from drugrepo_assets.definitions import defs
from drugrepo_assets.defs.automation.jobs import materialize_all_job, screening_inputs_job, screening_job
from drugrepo_assets.lib.partitions import dataset_partitions
from drugrepo_assets.lib.resources import PROFILES

_STAGES = (
    "raw_pairs",
    "validated_pairs",
    "rejected_pairs",
    "dataset_splits",
    "drug_graphs",
    "protein_encodings",
    "drugban_checkpoint",
    "model_evaluation",
)
_FIXED_STRATEGIES = ("random", "cold_drug", "cold_target")
_TABLES = ("raw_pairs", "validated_pairs", "rejected_pairs", "dataset_splits", "drug_graphs", "protein_encodings")
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
    val_auroc: float | None = None
    test_auroc: float | None = None
    checkpoint: str | None = None
    mlflow_run: str | None = None


def run_partition(instance: DagsterInstance, dataset: str, profile: str | None = None) -> PartitionReport:
    """Execute `materialize_all_job` for one dataset (with another training profile when named)."""
    job = defs.resolve_job_def(materialize_all_job.name)
    run_config: dict[str, Any] = dict(_QUIET_CONSOLE)
    if profile is not None:
        run_config["resources"] = {"training_profile": {"config": PROFILES[profile].model_dump()}}
    started = time.perf_counter()
    result = job.execute_in_process(
        run_config=run_config, instance=instance, partition_key=dataset, raise_on_error=False
    )
    report = PartitionReport(dataset, result.run_id, time.perf_counter() - started)
    _collect(result, report)
    return report


def _failures(result: ExecuteInProcessResult) -> list[str]:
    """One line per failed step or check of a run."""
    problems = []
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            key = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            problems.append(f"check {key} failed: {evaluation.description or ''}".rstrip(": "))
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            message = data.user_failure_data.description
        else:
            message = data.error.message.strip().splitlines()[0] if data.error else "unknown error"
        problems.append(f"step {event.step_key} failed: {message}")
    if not result.success and not problems:
        problems.append("run failed")
    return problems


@dataclass
class ScreeningReport:
    """The screening stage's runs: library and targets, then per dataset the pairs and best candidates."""

    seconds: float = 0.0
    library: int = 0
    targets: int = 0
    pairs: dict[str, int] = field(default_factory=dict)
    best: dict[str, str] = field(default_factory=dict)
    known: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def run_screening(
    instance: DagsterInstance, datasets: Sequence[str], max_library: int | None = None
) -> ScreeningReport:
    """Materialise the screening inputs once, then each dataset's scores and candidates."""
    run_config: dict[str, Any] = dict(_QUIET_CONSOLE)
    if max_library is not None:
        run_config["resources"] = {"screening": {"config": {"max_library": max_library}}}
    report, started = ScreeningReport(), time.perf_counter()
    inputs = defs.resolve_job_def(screening_inputs_job.name).execute_in_process(
        run_config=run_config, instance=instance, raise_on_error=False
    )
    report.problems += [f"screening inputs: {p}" for p in _failures(inputs)]
    for event in inputs.get_asset_materialization_events():
        materialization = event.materialization
        metadata: dict[str, Any] = {k: v.value for k, v in materialization.metadata.items()}
        rows = int(metadata["dagster/row_count"])
        if materialization.asset_key.to_user_string() == "screening_library":
            report.library = int(metadata["molecules"])
        elif materialization.asset_key.to_user_string() == "screening_targets":
            report.targets = rows
    if report.problems:
        return report
    job = defs.resolve_job_def(screening_job.name)
    for dataset in datasets:
        result = job.execute_in_process(
            run_config=run_config, instance=instance, partition_key=dataset, raise_on_error=False
        )
        report.problems += [f"{dataset}: {p}" for p in _failures(result)]
        for event in result.get_asset_materialization_events():
            materialization = event.materialization
            metadata = {k: v.value for k, v in materialization.metadata.items()}
            if materialization.asset_key.to_user_string() == "screening_scores":
                report.pairs[dataset] = int(metadata["pairs"])
            elif materialization.asset_key.to_user_string() == "repurposing_candidates":
                report.known[dataset] = int(metadata["known_interactions"])
                report.best[dataset] = str(metadata["top_candidates"])
    report.seconds = time.perf_counter() - started
    return report


def screening_summary(report: ScreeningReport) -> str:
    """Pairs scored per dataset and the markdown table of each dataset's top candidates."""
    text = [f"screening: {report.library} molecules × {report.targets} targets per checkpoint ({report.seconds:.1f} s)"]
    for dataset, pairs in report.pairs.items():
        text.append(
            f"  {dataset}: {pairs} pairs scored; known interactions among the candidates: {report.known.get(dataset, 0)}"
        )
        text += [f"    {line}" for line in report.best.get(dataset, "").splitlines()]
    return "\n".join(text)


def _collect(result: ExecuteInProcessResult, report: PartitionReport) -> None:
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        name = materialization.asset_key.to_user_string()
        metadata: dict[str, Any] = {k: v.value for k, v in materialization.metadata.items()}
        report.rows[name] = int(metadata.get("dagster/row_count", 0))
        if "path" in metadata:
            report.paths[name] = str(metadata["path"])
        if name == "dataset_splits":
            for strategy, splits in metadata.get("counts", {}).items():
                report.split_rows[strategy] = sum(int(n) for n in splits.values())
        elif name == "drugban_checkpoint":
            report.val_auroc = float(metadata["val_auroc"])
            report.checkpoint = str(metadata["checkpoint"])
            report.mlflow_run = str(metadata["mlflow_run"])
        elif name == "model_evaluation":
            report.test_auroc = float(metadata["test_auroc"])
    report.problems += _failures(result)
    missing = [stage for stage in _STAGES if stage not in report.rows]
    if missing:
        report.problems.append(f"not materialised: {', '.join(missing)}")


def _auroc(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary(reports: list[PartitionReport], mlflow_ui: str | None = None) -> str:
    """Plain-text table of rows per stage, val/test AUROC per dataset, then where everything went."""
    header = [
        "dataset",
        "raw",
        "valid",
        "rejected",
        *_FIXED_STRATEGIES,
        "shipped splits",
        "val AUROC",
        "test AUROC",
        "run s",
    ]
    lines = []
    for r in reports:
        shipped = ", ".join(
            f"{s.removeprefix('shipped_')} {n}" for s, n in sorted(r.split_rows.items()) if s.startswith("shipped_")
        )
        lines.append(
            [
                r.dataset,
                *(str(r.rows.get(stage, "-")) for stage in _STAGES[:3]),
                *(str(r.split_rows.get(s, "-")) for s in _FIXED_STRATEGIES),
                shipped or "-",
                _auroc(r.val_auroc),
                _auroc(r.test_auroc),
                f"{r.seconds:.1f}",
            ]
        )
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *lines]]
    text.append("")
    text.append("random .. shipped: rows (train + val + test) of each split strategy")
    text.append("val/test AUROC: drugban_checkpoint on its split strategy, test at the threshold chosen on val")
    text.append("tables (Parquet, one file per dataset):")
    for stage in _TABLES:
        found = [r.paths[stage] for r in reports if stage in r.paths]
        if found:
            text.append(f"  {stage:<18} {Path(found[0]).parent}/<dataset>.parquet")
    trained = [r for r in reports if r.checkpoint]
    if trained:
        text.append("checkpoints and MLflow runs:")
        for r in trained:
            text.append(f"  {r.dataset:<18} {r.checkpoint}")
            text.append(f"  {'':<18} {r.mlflow_run}")
    if mlflow_ui:
        text.append(f"MLflow UI: {mlflow_ui}")
    return "\n".join(text)


def main(argv: Sequence[str] = ()) -> int:
    """Run the demo; 0 when every run and check passed, 1 when one failed, 2 without an instance."""
    parser = argparse.ArgumentParser(prog="python -m drugrepo_assets.demo", description=__doc__)
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help="training profile (default: the environment's, demo locally)",
    )
    parser.add_argument(
        "--max-library",
        type=int,
        default=None,
        metavar="N",
        help="screen only the first N library molecules (default: every validated drug)",
    )
    args = parser.parse_args(list(argv))
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
            reports.append(run_partition(instance, dataset, args.profile))
        trained = [r.dataset for r in reports if not r.problems]
        screening = ScreeningReport(problems=["not run: a dataset's run failed"])
        if len(trained) == len(reports):
            print("screening ...", flush=True)
            screening = run_screening(instance, trained, args.max_library)
        home = instance.root_directory
    mlflow_ui = (
        f"mlflow ui --backend-store-uri sqlite:///{Path(home) / 'mlflow' / 'mlflow.db'}  (http://127.0.0.1:5000)"
    )
    print(summary(reports, mlflow_ui))
    print(screening_summary(screening))
    print(f"  runs recorded in {home} (open them with `make dev`)")
    problems = [f"{r.dataset}: {p}" for r in reports for p in r.problems] + [
        f"screening: {p}" for p in screening.problems
    ]
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    verdict = "FAILED" if problems else "all assets materialised, all checks passed"
    print(f"{len(reports) + 1 + len(screening.pairs)} runs: {verdict} ({time.perf_counter() - started:.1f} s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
