"""The serving code location loads beside the asset location and declares its cross-location deps."""

import os
import subprocess
import sys
from pathlib import Path

import yaml
from dagster import AssetKey

from drugrepo_assets.definitions import defs as asset_defs
from drugrepo_assets.serving.definitions import RESOURCES_BY_ENV
from drugrepo_assets.serving.definitions import defs as serving_defs

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = {"drugban_checkpoint", "model_evaluation", "dataset_splits", "validated_pairs"}


def test_serving_assets_depend_on_the_training_locations_assets_with_the_same_partitions() -> None:
    training = asset_defs.resolve_asset_graph()
    serving = serving_defs.resolve_asset_graph()
    for name in UPSTREAM:
        key = AssetKey(name)
        assert serving.get(key).is_external and not serving.get(key).is_materializable
        assert training.get(key).is_materializable
        assert serving.get(key).partitions_def == training.get(key).partitions_def
    assert serving.get(AssetKey("registered_model")).parent_keys == {
        AssetKey("drugban_checkpoint"),
        AssetKey("model_evaluation"),
    }
    assert serving.get(AssetKey("drift_report")).parent_keys == {
        AssetKey("drugban_checkpoint"),
        AssetKey("dataset_splits"),
        AssetKey("validated_pairs"),
    }
    assert {c.name for c in serving.get(AssetKey("drift_report")).check_keys} == {"drift_report_no_drift"}
    assert set(RESOURCES_BY_ENV) == {"local", "staging", "prod"}


def test_workspace_loads_both_code_locations(tmp_path: Path) -> None:
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    modules = {entry["python_module"]["module_name"] for entry in workspace["load_from"]}
    assert modules == {"drugrepo_assets.definitions", "drugrepo_assets.serving.definitions"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRUGREPO_", "DAGSTER_"))} | {
        "DAGSTER_HOME": str(tmp_path)
    }
    run = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "Validation successful for code location drugrepo_assets." in out
    assert "Validation successful for code location drugrepo_serving." in out
