"""The screening stage in-process on real validated pairs and the golden checkpoint: library shards, target
sets, the tile fan-out (incremental on both axes), the dataset's known pairs, candidates and enrichment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dagster import AssetSelection, DagsterEventType, DagsterInstance, materialize

from drugrepo_assets.definitions import all_asset_checks, all_assets
from drugrepo_assets.lib.records import CheckpointRecord
from drugrepo_assets.lib.resources import ScreeningSettings
from drugrepo_assets.screening.enrichment import retrospective_report
from drugrepo_assets_tests.defs.screening.screening_setup import stage_storage, validated_human, write_inputs
from drugrepo_assets_tests.defs.training.training_setup import resources

INPUTS = AssetSelection.assets(
    "screening_library", "screening_library_rejected", "screening_targets", "screening_targets_rejected"
)
SCORES = AssetSelection.assets("screening_scores", "repurposing_candidates", "screening_enrichment")


class Screening:
    """Where the fixture's storage is, and how to run the screening stage on it."""

    def __init__(self, base: Path, instance: DagsterInstance, validated: pd.DataFrame) -> None:
        self.base, self.instance, self.validated = base, instance, validated
        self.storage = base / "storage"

    def run(self, selection: AssetSelection, settings: ScreeningSettings, partition: str | None = "human") -> Any:
        result = materialize(
            [*all_assets, *all_asset_checks],
            selection=selection,
            partition_key=partition,
            instance=self.instance,
            resources={**resources(self.base, self.base / "source"), "screening": settings},
        )
        assert result.success
        return result

    def screen(self, settings: ScreeningSettings) -> tuple[Any, Any]:
        """The inputs, then the scores, candidates and enrichment: (inputs' result, scores' result)."""
        return self.run(INPUTS, settings, partition=None), self.run(SCORES, settings)

    def table(self, name: str, partition: str | None = "human") -> pd.DataFrame:
        return pd.read_parquet(
            self.storage / name / f"{partition}.parquet" if partition else self.storage / f"{name}.parquet"
        )

    def scores_root(self) -> Path:
        record = CheckpointRecord.model_validate_json((self.storage / "drugban_checkpoint" / "human.json").read_text())
        return self.storage / "screening_scores" / "human" / record.checkpoint_id


@pytest.fixture(scope="module")
def screening(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> Iterator[Screening]:
    """Human's validated pairs and drugs stored as the upstream assets, the golden checkpoint as human's."""
    base = tmp_path_factory.mktemp("screening")
    validated = validated_human()
    stage_storage(base / "storage", golden_dir, validated)
    with DagsterInstance.ephemeral() as instance:
        yield Screening(base, instance, validated)


def _metadata(result: Any, key: str) -> dict[str, Any]:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def _tile_outputs(result: Any) -> dict[str, dict[str, Any]]:
    """Each tile step's output metadata, by mapping key (``shard_<i>_block_<j>``)."""
    outputs = {}
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_OUTPUT and ".score_tile[" in (event.step_key or ""):
            key = event.step_key.split("[")[1].rstrip("]")
            outputs[key] = {k: v.value for k, v in event.event_specific_data.metadata.items()}
    return outputs


def _rows(table: Any) -> list[dict[str, Any]]:
    return [dict(record.data) for record in table.records]


def test_default_library_is_every_validated_drug_and_targets_the_most_studied(screening: Screening) -> None:
    screening.run(INPUTS, ScreeningSettings(default_targets=3, shard_size=100), partition=None)
    plan = screening.table("screening_library", None)
    shards = pd.concat([pd.read_parquet(uri) for uri in plan["uri"]], ignore_index=True)
    drugs = screening.validated.drop_duplicates("drug_id").sort_values("drug_id")
    assert shards["id"].tolist() == drugs["drug_id"].tolist() and shards["smiles"].tolist() == drugs["smiles"].tolist()
    assert plan["molecules"].tolist() == [100, 100, len(drugs) - 200]  # raw rows: nothing featurised yet
    targets = screening.table("screening_targets", None)
    positives = screening.validated.query("label == 1").groupby("target_id").size()
    expected = positives.reset_index().sort_values([0, "target_id"], ascending=[False, True]).head(3)
    assert targets["target_id"].tolist() == expected["target_id"].tolist() == targets["feature_id"].tolist()
    assert targets["known_positives"].tolist() == expected[0].tolist()
    proteins = screening.validated.drop_duplicates("target_id").set_index("target_id")["protein"]
    assert targets["sequence"].tolist() == proteins[targets["target_id"]].tolist()
    assert screening.table("screening_library_rejected", None).empty


def test_the_default_screen_knows_the_datasets_pairs_and_its_enrichment_is_over_every_pair(
    screening: Screening,
) -> None:
    everything = ScreeningSettings(default_targets=3, shard_size=100, top_k=1000)  # every pair reported
    _, result = screening.screen(everything)
    table = screening.table("screening_scores")
    refused = pd.read_csv(screening.scores_root() / "rejected.csv")  # lone ions the dataset holds, not candidates
    assert len(refused) and refused["reason"].str.startswith("SMILES: ").all()
    molecules = screening.validated["drug_id"].nunique() - len(refused)
    assert len(table) == 3 * molecules and table.groupby("target_id")["rank_in_target"].min().tolist() == [1] * 3
    labels = screening.validated.groupby(["drug_id", "target_id"])["label"].max()
    positives = {pair for pair, label in labels.items() if label == 1}
    assert {(d, t) for d, t, k in zip(table["drug_id"], table["target_id"], table["known"]) if k} == {
        (d, t) for d, t in positives if t in set(table["target_id"]) and d in set(table["drug_id"])
    }
    assert table["nearest_training_drug"].notna().all() and (table["drug_similarity"] == 1.0).all()  # trained on them
    assert (table["calibrated_score"] == table["score"]).all()  # the golden checkpoint records no temperature: T = 1

    candidates = screening.table("repurposing_candidates")
    assert candidates["repurposing_rank"].tolist() == list(range(1, len(table) + 1))
    expected = [labels.get((d, t), -1) for d, t in zip(candidates["drug_id"], candidates["target_id"])]
    assert candidates["known_label"].fillna(-1).tolist() == expected  # -1: the dataset does not know the pair
    assert candidates["known_interaction"].tolist() == [v == 1 for v in expected]
    metadata = _metadata(result, "repurposing_candidates")
    assert metadata["known_interactions"] == sum(v == 1 for v in expected)
    assert _rows(metadata["top_candidates"])[0]["drug_id"] == candidates["drug_id"].iloc[0]

    report = screening.table("screening_enrichment")
    pairs = table.rename(columns={"known": "active"})[["target_id", "logit", "active"]]
    pd.testing.assert_frame_equal(report, retrospective_report(pairs), check_dtype=False)
    assert len(report) == 3 and (report["actives"] > 0).all()

    scores = _metadata(result, "screening_scores")
    assert (scores["tiles"], scores["pairs"], scores["molecules"], scores["targets"]) == (
        3,
        3 * molecules,
        molecules,
        3,
    )
    best = _rows(scores["best_per_target"])
    assert [r["drug_id"] for r in best] == table[table["rank_in_target"] == 1].drop_duplicates("target_id")[
        "drug_id"
    ].tolist()
    assert {"picture_targets", "picture_matrix"} <= scores.keys() and "data:image/png;base64," in scores[
        "picture_targets"
    ]


def test_a_users_files_are_screened_and_bad_rows_quarantined(screening: Screening, tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path, screening.validated, molecules=6, targets=2)
    with inputs.library.open("a") as handle:
        handle.write('no_smiles,""\n' + "long," + "C" * 70_000 + "\n")
    with inputs.targets.open("a") as handle:
        handle.write(">bad\nMKJX\n")
    settings = ScreeningSettings(library=str(inputs.library), targets=str(inputs.targets), top_k=2, top_per_drug=1)
    screening.screen(settings)
    read = screening.table("screening_library_rejected", None)
    assert read["line"].tolist() == [10, 11] and read["id"].tolist() == ["no_smiles", "long"]
    assert set(read["kind"]) == {"molecule"} and set(read["file"]) == {str(inputs.library)}
    assert screening.table("screening_targets", None)["target_id"].tolist() == ["P0", "P1"]
    bad = screening.table("screening_targets_rejected", None)
    assert bad[["kind", "line", "id"]].values.tolist() == [["target", 5, "bad"]]
    assert bad["reason"].iloc[0].startswith("Protein: character 'J' not in the amino-acid alphabet")

    rejected = pd.read_csv(screening.scores_root() / "rejected.csv")
    assert rejected["id"].tolist() == ["bad", "no_smiles", "long", "unparseable", "ion"]  # targets, reader, rules
    assert rejected["reason"].iloc[3].startswith("SMILES: RDKit cannot parse 'C1CC'")
    assert rejected["reason"].iloc[4].startswith("SMILES: 1 heavy atom")
    table = screening.table("screening_scores")
    assert table.groupby("target_id").size().to_dict() == {"P0": 2, "P1": 2}
    per_drug = pd.read_parquet(screening.scores_root() / "top_per_drug.parquet")
    assert sorted(per_drug["drug_id"]) == [f"M{i:02d}" for i in range(6)]  # one target each, every kept molecule
    assert (screening.scores_root() / "drugs.png").exists()


def test_adding_molecules_or_targets_scores_only_the_new_tiles(screening: Screening, tmp_path: Path) -> None:
    folder = tmp_path / "library"
    first = write_inputs(tmp_path / "a", screening.validated, molecules=8, targets=2, bad=False)
    grown = write_inputs(tmp_path / "b", screening.validated, molecules=16, targets=4, bad=False)
    folder.mkdir()
    rows = pd.read_csv(grown.library)
    rows.head(8).to_csv(folder / "a.csv", index=False)
    settings = ScreeningSettings(library=str(folder), targets=str(first.targets), shard_size=8, target_block=2, top_k=3)
    _, result = screening.screen(settings)
    assert {k: v["kept"] for k, v in _tile_outputs(result).items()} == {"shard_0_block_0": False}

    rows.tail(8).to_csv(folder / "b.csv", index=False)
    inputs, result = screening.screen(settings)
    assert _metadata(inputs, "screening_library")["files_read_now"] == 1
    tiles = _tile_outputs(result)
    assert {k: v["kept"] for k, v in tiles.items()} == {"shard_0_block_0": True, "shard_1_block_0": False}
    assert tiles["shard_1_block_0"]["terms_read"] == 2 and tiles["shard_1_block_0"]["terms_computed"] == 0

    settings = ScreeningSettings(library=str(folder), targets=str(grown.targets), shard_size=8, target_block=2, top_k=3)
    inputs, result = screening.screen(settings)
    assert _metadata(inputs, "screening_library")["files_read_now"] == 0
    tiles = _tile_outputs(result)
    assert {k: v["kept"] for k, v in tiles.items()} == {
        "shard_0_block_0": True,
        "shard_0_block_1": False,
        "shard_1_block_0": True,
        "shard_1_block_1": False,
    }
    scores = _metadata(result, "screening_scores")
    assert (scores["tiles_scored_now"], scores["tiles_kept"], scores["pairs_scored_now"]) == (2, 2, 16 * 2)
    assert [r["kept"] for r in _rows(scores["per_tile"])] == [True, False, True, False]
    table = screening.table("screening_scores")
    assert table.groupby("target_id").size().to_dict() == {"P0": 3, "P1": 3, "P2": 3, "P3": 3}
    assert (table.groupby("target_id")["percentile_in_target"].max() == 100.0).all()


def test_the_screening_assets_give_the_rules_verdicts(screening: Screening, tmp_path: Path) -> None:
    """The shared edge-case table (edge_cases.py) through the library reader, the tile ops and the target reader."""
    from drugrepo_assets_tests.data.rows import write_csv
    from drugrepo_assets_tests.edge_cases import PROTEIN_CASES, SMILES_CASES, protein_verdict, smiles_verdict

    cases = {name: s for name, s in SMILES_CASES.items() if name != "nul"}  # a CSV cannot hold a NUL
    library = write_csv(tmp_path / "edge.csv", list(cases.items()), header=("id", "smiles"))
    targets = write_csv(tmp_path / "edge_targets.csv", list(PROTEIN_CASES.items()), header=("id", "sequence"))
    screening.screen(ScreeningSettings(library=str(library), targets=str(targets)))
    refused = pd.read_csv(screening.scores_root() / "rejected.csv", keep_default_na=False)
    molecules = refused[refused["kind"] == "molecule"]
    by_id = dict(zip(molecules["id"], molecules["reason"]))
    assert [by_id.get(name, "") for name in cases] == [smiles_verdict(s) for s in cases.values()]
    by_id = dict(zip(*screening.table("screening_targets_rejected", None)[["id", "reason"]].T.values))
    assert [by_id.get(name, "") for name in PROTEIN_CASES] == [protein_verdict(p) for p in PROTEIN_CASES.values()]
