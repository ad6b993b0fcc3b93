"""The cross-domain stage on the bundled Human data: its cluster split, a CDAN checkpoint and the source- and
target-domain AUROC of its evaluation, materialised in-process with the tiny profile."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dagster import AssetSelection, DagsterInstance, ExecuteInProcessResult, Failure, materialize

from drugrepo_assets.data.clusters import pair_clusters
from drugrepo_assets.data.splits import CLUSTER_SPLITS, SPLIT_COLUMNS, TARGET_TRAIN, cluster_split
from drugrepo_assets.definitions import all_asset_checks, all_assets
from drugrepo_assets.defs.training.training import load_target_pairs
from drugrepo_assets.lib.resources import TINY_PROFILE, DataSourceResource
from drugrepo_assets.lib.storage import StorageResource
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.ml.training.cdan import CDAN_KEY, CDANConfig
from drugrepo_assets_tests.defs.training.training_setup import resources

pytestmark = pytest.mark.scale

STAGE = AssetSelection.assets(
    "raw_pairs",
    "validated_pairs",
    "rejected_pairs",
    "dataset_splits",
    "drug_graphs",
    "protein_encodings",
    "drugban_checkpoint",
    "model_evaluation",
)
SEED = 0
"""`SplitSettings.seed` of `training_setup.resources`."""
RUN_CONFIG = {"ops": {"drugban_checkpoint": {"config": {"strategy": "cluster", "da": "cdan"}}}}


class CrossDomainStage:
    """One materialisation of the stage and where it wrote."""

    def __init__(self, base: Path, result: ExecuteInProcessResult) -> None:
        self.base, self.result = base, result

    def metadata(self, asset_name: str) -> dict[str, Any]:
        (event,) = [
            e for e in self.result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset_name
        ]
        return {k: v.value for k, v in event.materialization.metadata.items()}

    def value(self, asset_name: str) -> dict[str, Any]:
        return json.loads((self.base / "storage" / asset_name / "human.json").read_text())

    def table(self, asset_name: str) -> pd.DataFrame:
        return pd.read_parquet(self.base / "storage" / asset_name / "human.parquet")


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrossDomainStage]:
    base = tmp_path_factory.mktemp("cross-domain")
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [*all_assets, *all_asset_checks],
            selection=STAGE,
            partition_key="human",
            resources={**resources(base, base, TINY_PROFILE), "data_source": DataSourceResource(root="bundled")},
            run_config=RUN_CONFIG,
            instance=instance,
            raise_on_error=False,
        )
        yield CrossDomainStage(base, result)


def test_stage_materialises_and_its_checks_pass(stage: CrossDomainStage) -> None:
    assert stage.result.success
    materialised = {e.asset_key.to_user_string() for e in stage.result.get_asset_materialization_events()}
    assert {"dataset_splits", "drugban_checkpoint", "model_evaluation"} <= materialised
    checks = {e.check_name: e.passed for e in stage.result.get_asset_check_evaluations()}
    assert {"splits_disjoint", "drugban_checkpoint_reproduces", "model_evaluation_auroc_floor"} <= set(checks)
    assert all(checks.values()), checks


def test_the_cluster_split_of_the_asset_is_the_cores_for_its_seed(stage: CrossDomainStage) -> None:
    splits = stage.table("dataset_splits")
    stored = splits[splits["strategy"] == "cluster"].reset_index(drop=True)
    assert set(stored["split"]) == set(CLUSTER_SPLITS)
    valid = stage.table("validated_pairs")
    clusters = pair_clusters(valid)
    again = cluster_split(valid, seed=SEED, clusters=clusters)
    pd.testing.assert_frame_equal(stored[list(SPLIT_COLUMNS)], again, check_dtype=False)
    other = cluster_split(valid, seed=SEED + 1, clusters=clusters)
    assert set(zip(other["drug_id"], other["split"])) != set(zip(again["drug_id"], again["split"]))

    meta = stage.metadata("dataset_splits")
    assert meta["counts"]["cluster"] == again["split"].value_counts().to_dict()
    assert meta["cluster"] == again.attrs["cluster_summary"]
    assert meta["cluster"]["dropped"] == len(valid) - len(again) > 0


def test_the_checkpoint_is_cdans_with_its_discriminator(stage: CrossDomainStage) -> None:
    record = stage.value("drugban_checkpoint")
    assert record["strategy"] == "cluster"
    loaded = load_checkpoint(record["checkpoint"])
    model, extra = loaded.model, loaded.extra
    assert model.mlp_classifier.fc4.out_features == 1  # the one-logit model predict, screen and serve load
    saved = extra[CDAN_KEY]
    assert CDANConfig(**saved["config"]) == TINY_PROFILE.cdan_config()
    assert any(name.startswith("discriminator.") for name in saved["state_dict"])
    assert saved["head"]["weight"].shape[0] == 2  # the reference's two-logit head beside it

    meta = stage.metadata("drugban_checkpoint")
    assert meta["da"] == {"method": "cdan", **TINY_PROFILE.cdan_config().to_dict()}
    splits = stage.table("dataset_splits")
    target_rows = int(((splits["strategy"] == "cluster") & (splits["split"] == TARGET_TRAIN)).sum())
    assert meta["target_train_pairs"] == min(target_rows, TINY_PROFILE.max_train_pairs or target_rows)
    (epoch,) = meta["history"].records  # one epoch, from which on (cdan_init_epoch 1) the domain loss trains
    assert math.isfinite(epoch.data["da_loss"]) and math.isfinite(epoch.data["model_loss"])


def test_the_evaluation_reports_source_and_target_domain_auroc(stage: CrossDomainStage) -> None:
    evaluation = stage.value("model_evaluation")
    meta = stage.metadata("model_evaluation")
    assert meta["source_val_auroc"] == evaluation["val"]["auroc"]  # source domain: the cluster split's val pairs
    assert meta["target_test_auroc"] == evaluation["test"]["auroc"]  # target domain: its test pairs
    assert all(0.0 <= meta[name] <= 1.0 for name in ("source_val_auroc", "target_test_auroc"))


def test_cdan_on_a_strategy_without_target_pairs_is_refused(stage: CrossDomainStage) -> None:
    tables = [stage.table(name) for name in ("dataset_splits", "drug_graphs", "protein_encodings")]
    storage = StorageResource(base_path=str(stage.base / "storage"))
    with pytest.raises(Failure, match="strategy 'random' has no target_train rows"):
        load_target_pairs(*tables, storage, "random", TINY_PROFILE)
