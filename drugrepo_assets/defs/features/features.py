"""Feature stage: drug graphs and protein codes of every unique molecule and protein, content-addressed.

Features live once in the feature store under ``<storage>/features``, keyed by ``drug_id`` / ``target_id``
(hashes of the canonical SMILES / the sequence), so new data featurises only new items. Each
asset's value is a small Parquet manifest: the ids of its partition and the shard holding each.
"""

from typing import TYPE_CHECKING

import pandas as pd
from dagster import MetadataValue, Output, asset

from drugrepo_assets.defs.automation.automation import REFRESH
from drugrepo_assets.lib.partitions import dataset_partitions
from drugrepo_assets.lib.storage import StorageResource

if TYPE_CHECKING:
    from drugrepo_assets.ml.features.feature_store import EnsureResult, FeatureStore


def feature_store(storage: StorageResource) -> "FeatureStore":
    """The content-addressed store shared by every dataset partition: ``<storage base>/features``."""
    from drugrepo_assets.ml.features.feature_store import FeatureStore

    return FeatureStore(storage.base() / "features")


def _manifest_output(items: pd.DataFrame, key: str, result: "EnsureResult", location: str) -> Output[pd.DataFrame]:
    manifest = items.assign(shard=items[key].map(result.shard_of)).reset_index(drop=True)
    return Output(
        manifest,
        metadata={
            "dagster/row_count": MetadataValue.int(len(manifest)),
            "new": MetadataValue.int(result.new),
            "reused": MetadataValue.int(result.reused),
            "new_shard": MetadataValue.text(result.new_shard or "none"),
            "store": MetadataValue.path(location),
        },
    )


@asset(partitions_def=dataset_partitions, group_name="features", kinds={"rdkit", "numpy"}, automation_condition=REFRESH)
def drug_graphs(validated_pairs: pd.DataFrame, storage: StorageResource) -> Output[pd.DataFrame]:
    """DrugBAN graphs of every unique molecule, featurised only if its ``drug_id`` is not stored yet.

    Value: one row per molecule (``drug_id``, ``smiles``, ``shard``).
    """
    store = feature_store(storage).drugs
    items = validated_pairs.drop_duplicates("drug_id")[["drug_id", "smiles"]].sort_values("drug_id")
    result = store.ensure(items["drug_id"].tolist(), items["smiles"].tolist())
    return _manifest_output(items, "drug_id", result, str(store.dir))


@asset(partitions_def=dataset_partitions, group_name="features", kinds={"numpy"}, automation_condition=REFRESH)
def protein_encodings(validated_pairs: pd.DataFrame, storage: StorageResource) -> Output[pd.DataFrame]:
    """DrugBAN integer codes of every unique protein, encoded only if its ``target_id`` is not stored yet.

    Value: one row per protein (``target_id``, ``length``, ``shard``).
    """
    store = feature_store(storage).proteins
    items = validated_pairs.drop_duplicates("target_id")[["target_id", "protein"]].sort_values("target_id")
    result = store.ensure(items["target_id"].tolist(), items["protein"].tolist())
    items = items.assign(length=items["protein"].str.len()).drop(columns="protein")
    return _manifest_output(items, "target_id", result, str(store.dir))
