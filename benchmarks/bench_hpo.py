"""HPO throughput of `hpo_study` (trials/hour): 2 trials in parallel (1 torch thread each) vs 1 (2 threads).

Runs the real `hpo_job` with Dagster's multiprocess executor (``max_concurrent`` 2 or 1) on a
throw-away instance whose ``gpu`` pool allows 2 steps, tiny trials (128 training pairs, 1 epoch) on
the bundled human dataset, Optuna in SQLite and MLflow in SQLite. Prints a table and writes JSON.

    python benchmarks/bench_hpo.py [--trials 4] [--json benchmarks/results/hpo.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from dagster import (
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    JobDefinition,
    execute_job,
    materialize,
    reconstructable,
)

from drugrepo_assets.lib.resources import TINY_PROFILE

INSTANCE_YAML = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 2\n"
PROFILE = TINY_PROFILE.model_dump()
CONFIGS = ((2, 1), (1, 2))
"""(trials in parallel, torch threads per trial): the 2 cores are split, never oversubscribed."""


def hpo_job() -> JobDefinition:
    """The location's `hpo_job`, rebuilt in each step process by the multiprocess executor."""
    from drugrepo_assets.definitions import defs

    return defs.resolve_job_def("hpo_job")


def _resources_config(base: Path, threads: int, trials: int, study: str) -> dict[str, Any]:
    storage = str(base / "storage")
    return {
        "io_manager": {"config": {"base_path": storage}},
        "json_io_manager": {"config": {"base_path": storage}},
        "storage": {"config": {"base_path": storage}},
        "training_profile": {"config": {**PROFILE, "name": study, "threads": threads}},
        "mlflow_tracking": {
            "config": {
                "tracking_uri": f"sqlite:///{base / 'mlflow.db'}",
                "artifact_location": str(base / "mlflow-artifacts"),
            }
        },
        "hpo_settings": {
            "config": {
                "storage_url": f"sqlite:///{base / 'optuna.db'}",
                "n_trials": trials,
                "pruner_startup_trials": trials,
            }
        },
    }


def _prepare(base: Path, instance: DagsterInstance) -> None:
    """Materialise the data and feature stages of the human partition once (not timed)."""
    from drugrepo_assets.definitions import all_asset_checks, all_assets
    from drugrepo_assets.lib.environments import asset_resources

    resources = asset_resources("local", base)
    selection = AssetSelection.assets("dataset_splits", "drug_graphs", "protein_encodings").upstream()
    result = materialize(
        [*all_assets, *all_asset_checks],
        selection=selection,
        partition_key="human",
        resources=resources,
        instance=instance,
    )
    assert result.success


def _trial_span(instance: DagsterInstance, run_id: str) -> tuple[float, int]:
    """Seconds from the first trial step's start to the last one's success, and how many succeeded."""
    starts, ends = [], []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not (event.step_key or "").startswith("hpo_study.hpo_trial["):
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts.append(record.timestamp)
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            ends.append(record.timestamp)
    return max(ends) - min(starts), len(ends)


def bench(trials: int) -> dict[str, Any]:
    """Run the study once per configuration on one instance; trials/hour over the trial phase and the run."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-hpo-") as home:
        Path(home, "dagster.yaml").write_text(INSTANCE_YAML)
        base = Path(home)
        with DagsterInstance.from_config(home) as instance:
            _prepare(base, instance)
            for parallel, threads in CONFIGS:
                study = f"bench-p{parallel}"
                run_config = {
                    "execution": {"config": {"multiprocess": {"max_concurrent": parallel}}},
                    "resources": _resources_config(base, threads, trials, study),
                    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                }
                started = time.perf_counter()
                with execute_job(
                    reconstructable(hpo_job), instance, run_config=run_config, tags={"dagster/partition": "human"}
                ) as result:
                    wall = time.perf_counter() - started
                    assert result.success, "hpo_job failed"
                    span, done = _trial_span(instance, result.run_id)
                rows.append(
                    {
                        "parallel_trials": parallel,
                        "torch_threads_per_trial": threads,
                        "trials": done,
                        "trial_phase_s": round(span, 1),
                        "run_wall_s": round(wall, 1),
                        "trials_per_hour": round(done / span * 3600, 1),
                        "trials_per_hour_whole_run": round(done / wall * 3600, 1),
                    }
                )
    return {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "profile": {k: PROFILE[k] for k in ("epochs", "batch_size", "max_train_pairs", "max_eval_pairs")},
        "executor": "multiprocess",
        "rows": rows,
    }


def table(results: dict[str, Any]) -> str:
    """Markdown table of the results."""
    lines = [
        "| trials in parallel | torch threads / trial | trials | trial phase s | trials/hour | run wall s | trials/hour (whole run) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['parallel_trials']} | {r['torch_threads_per_trial']} | {r['trials']} | {r['trial_phase_s']} "
            f"| {r['trials_per_hour']} | {r['run_wall_s']} | {r['trials_per_hour_whole_run']} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=4, help="trials per configuration")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/hpo.json"))
    args = parser.parse_args()
    results = bench(args.trials)
    print(table(results))
    print(f"tiny trials: {results['profile']}; load average at the end {results['load_average_at_end']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
