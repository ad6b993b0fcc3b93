"""drug_graphs / protein_encodings: features are content-addressed, so new data featurises only new items."""

from pathlib import Path

import pandas as pd
import torch
from dagster import AssetSelection, DagsterInstance, ExecuteInProcessResult, materialize

from drugrepo_assets.definitions import all_asset_checks, all_assets
from drugrepo_assets.ml.features.dataset import PairData
from drugrepo_assets.ml.features.feature_store import FeatureStore
from drugrepo_assets_tests.defs.training.training_setup import resources, small_dataset

FEATURES = AssetSelection.assets("drug_graphs", "protein_encodings", "rejected_pairs").upstream()
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


def materialise_features(base: Path, source: Path) -> ExecuteInProcessResult:
    result = materialize(
        [*all_assets, *all_asset_checks],
        selection=FEATURES,
        partition_key="human",
        resources=resources(base, source),
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success
    return result


def feature_metadata(result: ExecuteInProcessResult) -> dict[str, dict]:
    return {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() in ("drug_graphs", "protein_encodings")
    }


def test_new_rows_featurise_only_the_new_molecule(tmp_path: Path) -> None:
    source = tmp_path / "source"
    pairs = small_dataset(source, rows=150)
    first = feature_metadata(materialise_features(tmp_path, source))
    valid = pd.read_parquet(tmp_path / "storage" / "validated_pairs" / "human.parquet")
    n_drugs, n_targets = valid["drug_id"].nunique(), valid["target_id"].nunique()
    assert first["drug_graphs"]["new"] == n_drugs and first["drug_graphs"]["reused"] == 0
    assert first["protein_encodings"]["new"] == n_targets

    assert ASPIRIN not in pairs.read_text()
    known_protein = valid["protein"].iloc[0]
    with open(pairs, "a", encoding="utf-8") as handle:
        handle.write(f"{ASPIRIN},{known_protein},1\n")
    second = feature_metadata(materialise_features(tmp_path, source))
    assert (second["drug_graphs"]["new"], second["drug_graphs"]["reused"]) == (1, n_drugs)
    assert (second["protein_encodings"]["new"], second["protein_encodings"]["reused"]) == (0, n_targets)
    assert second["protein_encodings"]["new_shard"] == "none"

    manifest = pd.read_parquet(tmp_path / "storage" / "drug_graphs" / "human.parquet")
    assert len(manifest) == n_drugs + 1 and manifest["shard"].nunique() == 2
    assert len(list(Path(second["drug_graphs"]["store"]).glob("*.npz"))) == 2


def test_stored_features_batch_exactly_like_featurising_on_the_fly(tmp_path: Path) -> None:
    source = tmp_path / "source"
    small_dataset(source, rows=60)
    materialise_features(tmp_path, source)
    valid = pd.read_parquet(tmp_path / "storage" / "validated_pairs" / "human.parquet")
    drugs = pd.read_parquet(tmp_path / "storage" / "drug_graphs" / "human.parquet")
    targets = pd.read_parquet(tmp_path / "storage" / "protein_encodings" / "human.parquet")
    store = FeatureStore(tmp_path / "storage" / "features")
    stored = store.pair_data(
        valid["drug_id"].tolist(),
        valid["target_id"].tolist(),
        dict(zip(drugs["drug_id"], drugs["shard"])),
        dict(zip(targets["target_id"], targets["shard"])),
        valid["label"].tolist(),
    )
    fresh = PairData.from_lists(valid["smiles"].tolist(), valid["protein"].tolist(), valid["label"].tolist())
    rows = torch.arange(len(valid))
    (g1, p1), (g2, p2) = stored.batch(rows), fresh.batch(rows)
    assert torch.equal(g1.node_feats, g2.node_feats)
    assert torch.equal(g1.edge_index, g2.edge_index)
    assert torch.equal(g1.num_nodes, g2.num_nodes)
    assert torch.equal(p1, p2)
    assert torch.equal(stored.labels, fresh.labels)
