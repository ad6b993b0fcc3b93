"""The screening stage in-process on small real datasets: library shards, scored shards (retried, incremental), candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance, materialize

from drugrepo_assets.data.rules import PROTEIN_ALPHABET
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.definitions import all_asset_checks, all_assets
from drugrepo_assets.ml.dataset import PairData
from drugrepo_assets.ml.model import load_checkpoint
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.records import CheckpointRecord
from drugrepo_assets.resources import ScreeningSettings
from drugrepo_assets_tests.assets.training_setup import resources
from drugrepo_assets_tests.data.rows import real_rows, write_csv

FEATURES = AssetSelection.assets("raw_pairs", "validated_pairs", "rejected_pairs", "drug_graphs", "protein_encodings")
TRAINING = AssetSelection.assets("dataset_splits", "drugban_checkpoint")
INPUTS = AssetSelection.assets(
    "screening_library", "screening_library_rejected", "screening_targets", "screening_targets_rejected"
)
SCORES = AssetSelection.assets("screening_scores", "repurposing_candidates", "screening_enrichment")
SOURCES = {
    "bindingdb": "bindingdb/sample/train.csv",
    "biosnap": "biosnap/random/test.csv",
    "human": "human/random/train.csv",
}


class Screening:
    """Where the fixture's stages wrote, and how to run the screening stage again."""

    def __init__(self, base: Path, source: Path, instance: DagsterInstance) -> None:
        self.base, self.source, self.instance = base, source, instance

    def run(self, selection: AssetSelection, settings: ScreeningSettings, partition: str | None = "human") -> Any:
        result = materialize(
            [*all_assets, *all_asset_checks],
            selection=selection,
            partition_key=partition,
            instance=self.instance,
            resources={**resources(self.base, self.source), "screening": settings},
        )
        assert result.success
        return result

    def table(self, name: str, partition: str | None = "human") -> pd.DataFrame:
        folder = self.base / "storage"
        return pd.read_parquet(folder / name / f"{partition}.parquet" if partition else folder / f"{name}.parquet")


@pytest.fixture(scope="module")
def screening(tmp_path_factory: pytest.TempPathFactory) -> Screening:
    """Three small datasets featurised, a tiny checkpoint trained on human, the default library and targets."""
    base = tmp_path_factory.mktemp("screening")
    source = base / "source"
    for dataset, relative in SOURCES.items():
        write_csv(source / dataset / "pairs.csv", real_rows(relative, range(1, 61 if dataset != "human" else 301)))
    instance = DagsterInstance.ephemeral()
    stage = Screening(base, source, instance)
    for dataset in SOURCES:
        stage.run(FEATURES, ScreeningSettings(), dataset)
    stage.run(TRAINING, ScreeningSettings())
    stage.run(INPUTS, ScreeningSettings(default_targets=3), partition=None)
    return stage


def _scores_with(stage: Screening, shard_size: int, top_k: int = 1000) -> pd.DataFrame:
    stage.run(INPUTS, ScreeningSettings(default_targets=3, shard_size=shard_size), partition=None)
    stage.run(SCORES, ScreeningSettings(default_targets=3, shard_size=shard_size, top_k=top_k))
    return stage.table("screening_scores")


def _library_molecules(stage: Screening) -> pd.DataFrame:
    plan = stage.table("screening_library", None)
    return pd.concat([pd.read_parquet(uri) for uri in plan["uri"]], ignore_index=True)


def _metadata(result: Any, key: str) -> dict[str, Any]:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def _latest_metadata(stage: Screening, key: str) -> dict[str, Any]:
    """The metadata of an asset's latest materialisation, as the event log holds it."""
    record = stage.instance.fetch_materializations(AssetKey(key), limit=1).records[0]
    return dict(record.asset_materialization.metadata)


def _rows(table: Any) -> list[dict[str, Any]]:
    return [dict(record.data) for record in table.records]


def _checkpoint(stage: Screening) -> CheckpointRecord:
    return CheckpointRecord.model_validate_json(
        (stage.base / "storage" / "drugban_checkpoint" / "human.json").read_text()
    )


def test_default_library_is_every_validated_drug_and_targets_the_most_studied(screening: Screening) -> None:
    validated = pd.concat(screening.table("validated_pairs", d) for d in SOURCES)
    library = _library_molecules(screening)
    assert sorted(library["drug_id"]) == sorted(validated["drug_id"].unique())
    assert (library["drug_id"] == library["feature_id"]).all() and library["feature_shard"].notna().all()
    targets = screening.table("screening_targets", None)
    positives = validated[validated["label"] == 1].groupby("target_id").size()
    expected = positives.reset_index().sort_values([0, "target_id"], ascending=[False, True])["target_id"].head(3)
    assert targets["target_id"].tolist() == expected.tolist()
    assert targets["known_positives"].tolist() == positives[expected].tolist()
    assert screening.table("screening_library_rejected", None).empty


def test_shard_size_does_not_change_the_table_and_scores_are_the_models(screening: Screening) -> None:
    one = _scores_with(screening, shard_size=100_000)
    assert len(screening.table("screening_library", None)) == 1
    many = _scores_with(screening, shard_size=7)
    library, targets = _library_molecules(screening), screening.table("screening_targets", None)
    assert len(screening.table("screening_library", None)) == -(-len(library) // 7)
    assert len(one) == len(library) * len(targets)
    pd.testing.assert_frame_equal(
        one.drop(columns=["logit", "score", "percentile"]), many.drop(columns=["logit", "score", "percentile"])
    )
    np.testing.assert_allclose(one["logit"], many["logit"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(one["percentile"], many["percentile"])

    model, _ = load_checkpoint(_checkpoint(screening).checkpoint)
    sample = one.sample(40, random_state=0)
    proteins = dict(
        zip(
            pd.concat(screening.table("validated_pairs", d) for d in SOURCES)["target_id"],
            pd.concat(screening.table("validated_pairs", d) for d in SOURCES)["protein"],
        )
    )
    pairs = PairData.from_lists(sample["smiles"].tolist(), [proteins[t] for t in sample["target_id"]])
    np.testing.assert_allclose(sample["logit"], predict_logits(model, pairs), atol=1e-5, rtol=0)


def test_ranks_and_percentiles_within_each_target(screening: Screening) -> None:
    table = _scores_with(screening, shard_size=11)
    for _, rows in table.groupby("target_id", sort=False):
        logits = rows["logit"].to_numpy()
        assert (np.diff(logits) <= 0).all()  # best first
        expected_rank = [int((logits > x).sum()) + 1 for x in logits]
        assert rows["rank"].tolist() == expected_rank
        np.testing.assert_allclose(rows["percentile"], [100.0 * (logits <= x).sum() / len(logits) for x in logits])
        np.testing.assert_allclose(rows["score"], 1 / (1 + np.exp(-logits.astype(np.float64))), rtol=1e-6)
    checkpoint = _checkpoint(screening)
    assert set(table["checkpoint_id"]) == {checkpoint.checkpoint_id}
    assert load_checkpoint(checkpoint.checkpoint)[1]["checkpoint_id"] == checkpoint.checkpoint_id
    metadata = _latest_metadata(screening, "screening_scores")
    best = table[table["rank"] == 1].drop_duplicates("target_id")[["target_id", "drug_id", "score"]]
    assert _rows(metadata["best_per_target"]) == best.to_dict("records")
    assert metadata["checkpoint_id"].value == checkpoint.checkpoint_id


def test_enrichment_is_computed_over_the_whole_library_from_the_known_actives(screening: Screening) -> None:
    from drugrepo_assets.ml.enrichment import retrospective_report

    table = _scores_with(screening, shard_size=9, top_k=10_000)  # every pair, ranked
    positives = screening.table("validated_pairs").query("label == 1")
    known = set(zip(positives["drug_id"], positives["target_id"]))
    pairs = table.assign(active=[(d, t) in known for d, t in zip(table["drug_id"], table["target_id"])])
    expected = retrospective_report(pairs[["target_id", "logit", "active"]])
    report = screening.table("screening_enrichment")
    assert len(report) >= 1 and (report["actives"] > 0).all()
    pd.testing.assert_frame_equal(report, expected, check_dtype=False)
    shown = _latest_metadata(screening, "screening_enrichment")["report"]
    assert _rows(shown) == report.to_dict("records")
    assert [(c.name, c.type) for c in shown.schema.columns][:3] == [
        ("target_id", "string"),
        ("molecules", "int"),
        ("actives", "int"),
    ]


def test_top_k_is_the_head_of_the_full_ranking(screening: Screening) -> None:
    full = _scores_with(screening, shard_size=9, top_k=1000)
    top = _scores_with(screening, shard_size=9, top_k=4)
    pd.testing.assert_frame_equal(top, full.groupby("target_id", sort=False).head(4).reset_index(drop=True))


def test_candidates_are_the_top_k_with_the_known_pairs_flagged(screening: Screening) -> None:
    _scores_with(screening, shard_size=20, top_k=5)
    scores, candidates = screening.table("screening_scores"), screening.table("repurposing_candidates")
    assert candidates.groupby("target_id").size().tolist() == [5] * scores["target_id"].nunique()
    top = scores.groupby("target_id", sort=False).head(5).reset_index(drop=True)
    pd.testing.assert_frame_equal(candidates[top.columns], top)
    shown = _latest_metadata(screening, "repurposing_candidates")["top_candidates"]
    columns = ["target_id", "rank", "drug_id", "score", "known_interaction"]
    assert [(c.name, c.type) for c in shown.schema.columns] == list(
        zip(columns, ["string", "int", "string", "float", "bool"])
    )
    assert _rows(shown) == candidates.groupby("target_id").head(3)[columns].to_dict("records")
    _scores_with(screening, shard_size=20, top_k=10_000)  # every pair: every known one must be flagged
    candidates = screening.table("repurposing_candidates")
    human = screening.table("validated_pairs")
    known = human[human["target_id"].isin(candidates["target_id"])]
    flagged = candidates[candidates["known_interaction"]]
    assert len(flagged) > 0
    assert set(zip(flagged["drug_id"], flagged["target_id"])) == set(
        zip(known.loc[known["label"] == 1, "drug_id"], known.loc[known["label"] == 1, "target_id"])
    )
    negatives = candidates[candidates["known_label"] == 0]
    assert set(zip(negatives["drug_id"], negatives["target_id"])) == set(
        zip(known.loc[known["label"] == 0, "drug_id"], known.loc[known["label"] == 0, "target_id"])
    ) - set(zip(flagged["drug_id"], flagged["target_id"]))


def test_a_users_files_are_screened_and_bad_rows_quarantined(screening: Screening, tmp_path: Path) -> None:
    library = tmp_path / "library.csv"
    library.write_text(
        "id,SMILES\naspirin,CC(=O)Oc1ccccc1C(=O)O\nbroken,C1CC\naspirin,CCO\ncaffeine,Cn1cnc2c1c(=O)n(C)c(=O)n2C\n,CCN\n"
    )
    fasta = tmp_path / "targets.fasta"
    sequence = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWSTPSELGHAGLNGDILVWNPVLEDAFELSSMGIRVDADTLKHALALTGDEDRLELEWHQALLRGEMPQTIGGGIGQSRLTMLLLQLPH"
    fasta.write_text(f">P1 kinase\n{sequence[:60]}\n{sequence[60:]}\n>bad\nMKJX\n")
    settings = ScreeningSettings(library=str(library), targets=str(fasta), top_k=2)
    screening.run(INPUTS, settings, partition=None)
    kept = _library_molecules(screening)
    assert kept["drug_id"].tolist() == [
        "aspirin",
        "caffeine",
        "library.csv:6",
    ]  # a row without an id is named by its line
    rejected = screening.table("screening_library_rejected", None).sort_values("source_row")
    assert rejected[["source_row", "id", "reason"]].values.tolist() == [
        [3, "broken", "SMILES: RDKit cannot parse 'C1CC' (SMILES syntax error)"],
        [4, "aspirin", "id: 'aspirin' already used on an earlier row"],
    ]
    assert set(rejected["source_file"]) == {str(library)}
    assert screening.table("screening_targets", None)["target_id"].tolist() == ["P1"]
    bad = screening.table("screening_targets_rejected", None)
    assert bad[["source_row", "id", "reason"]].values.tolist() == [
        [
            4,
            "bad",
            f"Protein: character 'J' not in the amino-acid alphabet {PROTEIN_ALPHABET} (first at position 3 of 4)",
        ]
    ]
    screening.run(SCORES, settings)
    scores = screening.table("screening_scores")
    assert len(scores) == 2 and set(scores["drug_id"]) < {"aspirin", "caffeine", "library.csv:6"}
    assert set(scores["target_id"]) == {"P1"} and sorted(scores["rank"]) == [1, 2]


def test_a_failed_shard_is_retried_alone(screening: Screening, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shard op killed on its first attempt (a lost pod) is retried; no other shard is scored twice."""
    from drugrepo_assets.assets import screening as stage

    real, calls = stage.score_stored_shard, []

    def fail_once_on_the_second_shard(engine, store, part, *args, **kwargs):
        calls.append(part.shard)
        if part.shard == second and calls.count(second) == 1:
            raise ConnectionResetError("pod lost")
        return real(engine, store, part, *args, **kwargs)

    settings = ScreeningSettings(default_targets=3, shard_size=13, top_k=17)  # a top_k of its own: nothing scored yet
    screening.run(INPUTS, settings, partition=None)
    plan = screening.table("screening_library", None)
    second = plan["shard"].iloc[1]
    monkeypatch.setattr(stage, "score_stored_shard", fail_once_on_the_second_shard)
    result = screening.run(SCORES, settings)
    retried = [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried == ["screening_scores.score_shard[shard_1]"]
    assert sorted(calls) == sorted([*plan["shard"], second])  # every shard once, the failed one twice
    metadata = _metadata(result, "screening_scores")
    assert metadata["pairs_scored_now"] == metadata["pairs"] == plan["molecules"].sum() * 3
    assert metadata["pairs_found_scored"] == 0 and metadata["shards"] == len(plan)
    per_shard = _rows(metadata["per_shard"])
    assert [(r["position"], r["shard"], r["molecules"]) for r in per_shard] == list(
        zip(range(len(plan)), plan["shard"], plan["molecules"])
    )
    assert [r["scored_pairs"] for r in per_shard] == (plan["molecules"] * 3).tolist()


def test_a_new_library_file_or_target_costs_only_itself(screening: Screening, tmp_path: Path) -> None:
    from drugrepo_assets.data.validate import canonicalize, drug_id

    known = set(pd.concat(screening.table("validated_pairs", d) for d in SOURCES)["drug_id"])
    candidates = pd.read_csv(bundled_root() / "human" / "cold" / "test.csv")["SMILES"].unique()
    fresh = [s for s in candidates if drug_id(canonicalize(s)) not in known][:30]
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "a.smi").write_text("".join(f"{s} A{i}\n" for i, s in enumerate(fresh[:18])))
    targets = screening.table("validated_pairs")[["target_id", "protein"]].drop_duplicates().head(2)
    fasta = tmp_path / "targets.fasta"
    fasta.write_text(f">P0\n{targets['protein'].iloc[0]}\n")
    settings = ScreeningSettings(library=str(folder), targets=str(fasta), shard_size=5, top_k=3)

    first = screening.run(INPUTS, settings, partition=None)
    assert _metadata(first, "screening_library")["featurised_now"] == 18
    assert _metadata(screening.run(SCORES, settings), "screening_scores")["pairs_scored_now"] == 18

    (folder / "b.smi").write_text("".join(f"{s} B{i}\n" for i, s in enumerate(fresh[18:])))
    grown = _metadata(screening.run(INPUTS, settings, partition=None), "screening_library")
    assert (grown["featurised_now"], grown["files_read_now"], grown["molecules"]) == (12, 1, 30)
    scored = _metadata(screening.run(SCORES, settings), "screening_scores")
    assert (scored["pairs_scored_now"], scored["pairs_found_scored"]) == (12, 18)

    fasta.write_text(f">P0\n{targets['protein'].iloc[0]}\n>P1\n{targets['protein'].iloc[1]}\n")
    screening.run(INPUTS, settings, partition=None)
    scored = _metadata(screening.run(SCORES, settings), "screening_scores")
    assert (scored["pairs_scored_now"], scored["pairs_found_scored"]) == (30, 30)  # P1 against all 30; P0 kept
    table = screening.table("screening_scores")
    assert table.groupby("target_id").size().to_dict() == {"P0": 3, "P1": 3}


def test_the_screening_assets_give_the_rules_verdicts(screening: Screening, tmp_path: Path) -> None:
    """The shared edge-case table (edge_cases.py) through screening_library and screening_targets."""
    from drugrepo_assets_tests.edge_cases import PROTEIN_CASES, SMILES_CASES, protein_verdict, smiles_verdict

    cases = {name: s for name, s in SMILES_CASES.items() if name != "nul"}  # a CSV cannot hold a NUL
    library = write_csv(tmp_path / "edge.csv", list(cases.items()), header=("id", "smiles"))
    targets = write_csv(tmp_path / "edge_targets.csv", list(PROTEIN_CASES.items()), header=("id", "sequence"))
    screening.run(INPUTS, ScreeningSettings(library=str(library), targets=str(targets)), partition=None)
    refused = screening.table("screening_library_rejected", None)
    by_id = dict(zip(refused["id"], refused["reason"]))
    assert [by_id.get(name, "") for name in cases] == [smiles_verdict(s) for s in cases.values()]
    refused = screening.table("screening_targets_rejected", None)
    by_id = dict(zip(refused["id"], refused["reason"]))
    assert [by_id.get(name, "") for name in PROTEIN_CASES] == [protein_verdict(p) for p in PROTEIN_CASES.values()]
