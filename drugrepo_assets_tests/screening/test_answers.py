"""The matrix's answers merged from tiles equal the same answers computed in memory from the whole
matrix: per target, per drug, ranks and percentiles on both axes, z-scores, the repurposing table, ties
included (copies of molecules and of targets under other ids score exactly alike)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drugrepo_assets.data.library import iter_library
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.model.calibration import CALIBRATED_COLUMN, Temperature
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.screening.answers import ANSWER_COLUMNS, build_answers
from drugrepo_assets.screening.driver import ScreenRun, screen_stream
from drugrepo_assets.screening.engine import ScreeningEngine
from drugrepo_assets.screening.plan import target_blocks, tile_name
from drugrepo_assets.screening.terms import TargetTermStore
from drugrepo_assets.screening.tiles import TileSettings, read_drugs, read_logits

TOP, TOP_PER_DRUG = 5, 4


def bundled_molecules(n: int) -> list[str]:
    """``n`` distinct bundled SMILES, deterministic."""
    rows = pd.read_csv(bundled_root() / "human" / "random" / "train.csv")
    return sorted(rows["SMILES"].drop_duplicates())[:n]


def bundled_proteins(n: int) -> list[str]:
    """``n`` distinct bundled protein sequences of at most 1,200 residues, deterministic."""
    rows = pd.read_csv(bundled_root() / "human" / "random" / "train.csv")
    proteins = rows["Protein"].drop_duplicates()
    return sorted(p for p in proteins if len(p) <= 1200)[:n]


@pytest.fixture(scope="module")
def screened(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> tuple[Path, ScreenRun, TileSettings]:
    """70 molecules (10 of them copies under other ids) × 23 targets (3 copies), in shards of 16 and blocks of 6."""
    folder = tmp_path_factory.mktemp("answers")
    smiles = bundled_molecules(60)
    smiles += smiles[:10]
    library = folder / "library.csv"
    pd.DataFrame({"id": [f"m{i}" for i in range(len(smiles))], "smiles": smiles}).to_csv(library, index=False)
    proteins = bundled_proteins(20)
    proteins += proteins[:3]
    targets = pd.DataFrame({"id": [f"t{i}" for i in range(len(proteins))], "sequence": proteins})
    loaded = load_checkpoint(str(golden_dir / "model_state.pt"))
    engine = ScreeningEngine(loaded.model)
    settings = TileSettings(top=TOP, top_per_drug=TOP_PER_DRUG)
    root = folder / "screen"
    terms = TargetTermStore(folder / "terms", loaded.checkpoint_id)
    run = screen_stream(
        engine, iter_library(str(library)), target_blocks(targets, 6), root, settings, shard_size=16, terms=terms
    )
    return root, run, settings


def whole_matrix(root: Path, run: ScreenRun) -> tuple[np.ndarray, list[str], list[str]]:
    """The [molecules, targets] logits reassembled from every tile, with the molecules' and targets' ids."""
    rows, ids = [], []
    for shard in run.shards:
        drugs = read_drugs(root, shard)
        ids += drugs["drug_id"].tolist()
        rows.append(
            np.concatenate(
                [read_logits(root, tile_name(shard, b.name), len(drugs), len(b)) for b in run.blocks], axis=1
            )
        )
    return np.concatenate(rows), ids, [t for b in run.blocks for t in b.ids]


def in_memory(matrix: np.ndarray, drug_ids: list[str], target_ids: list[str]) -> dict[str, pd.DataFrame]:
    """The answer tables computed directly from the whole matrix (the definitions of `screening.answers`)."""
    d, t = matrix.shape
    x64 = matrix.astype(np.float64)
    t_mean, t_std = x64.mean(0), x64.std(0)
    d_mean, d_std = x64.mean(1), x64.std(1)

    def row(i: int, j: int) -> dict[str, object]:
        x = matrix[i, j]
        z_t = (float(x) - t_mean[j]) / t_std[j]
        z_d = (float(x) - d_mean[i]) / d_std[i]
        return {
            "target_id": target_ids[j],
            "drug_id": drug_ids[i],
            "logit": x,
            "rank_in_target": 1 + int((matrix[:, j] > x).sum()),
            "percentile_in_target": 100.0 * (matrix[:, j] <= x).sum() / d,
            "rank_in_drug": 1 + int((matrix[i] > x).sum()),
            "percentile_in_drug": 100.0 * (matrix[i] <= x).sum() / t,
            "z_target": z_t,
            "z_drug": z_d,
            "repurposing_z": min(z_t, z_d),
            "_i": i,
            "_j": j,
        }

    per_target = [row(int(i), j) for j in range(t) for i in np.argsort(-matrix[:, j], kind="stable")[:TOP]]
    per_drug = [row(i, int(j)) for i in range(d) for j in np.argsort(-matrix[i], kind="stable")[:TOP_PER_DRUG]]
    both = pd.DataFrame(per_target + per_drug).drop_duplicates(["_i", "_j"])
    both["_neg_z"], both["_neg_logit"] = -both["repurposing_z"], -both["logit"].astype(np.float64)
    repurposing = both.sort_values(["_neg_z", "_neg_logit", "_i", "_j"], kind="stable")
    return {"per_target": pd.DataFrame(per_target), "per_drug": pd.DataFrame(per_drug), "repurposing": repurposing}


EXACT = [
    "target_id",
    "drug_id",
    "logit",
    "rank_in_target",
    "percentile_in_target",
    "rank_in_drug",
    "percentile_in_drug",
]
Z = ["z_target", "z_drug", "repurposing_z"]


def test_the_merged_answers_equal_the_in_memory_answers_ties_included(
    screened: tuple[Path, ScreenRun, TileSettings],
) -> None:
    root, run, settings = screened
    assert len(run.shards) == 5 and len(run.blocks) == 4 and run.molecules == 70 and run.targets == 23
    answers = build_answers(root, run.shards, run.blocks, settings)
    matrix, drug_ids, target_ids = whole_matrix(root, run)
    assert matrix.shape == (70, 23)
    # the copies tie exactly: molecule m60 is m0 again, target t20 is t0 again
    assert np.array_equal(matrix[60], matrix[0]) and np.array_equal(matrix[:, 20], matrix[:, 0])
    expected = in_memory(matrix, drug_ids, target_ids)
    for name, got in (
        ("per_target", answers.per_target),
        ("per_drug", answers.per_drug),
        ("repurposing", answers.repurposing),
    ):
        want = expected[name].reset_index(drop=True)
        assert list(got.columns[-len(ANSWER_COLUMNS) :]) == list(ANSWER_COLUMNS)
        assert len(got) == len(want), name
        pd.testing.assert_frame_equal(
            got[EXACT].reset_index(drop=True), want[EXACT].astype(got[EXACT].dtypes.to_dict()), check_exact=True
        )
        np.testing.assert_allclose(got[Z].to_numpy(float), want[Z].to_numpy(float), rtol=1e-9, atol=1e-9)
    per_target = answers.per_target.set_index("target_id")
    copy, original = per_target.loc["t20"], per_target.loc["t0"]  # a copied target ranks the same molecules alike
    assert copy["drug_id"].tolist() == original["drug_id"].tolist()
    assert copy["rank_in_target"].tolist() == original["rank_in_target"].tolist()
    assert answers.repurposing["repurposing_rank"].tolist() == list(range(1, len(answers.repurposing) + 1))


def test_a_copied_molecule_shares_its_original_rank_in_every_target(
    screened: tuple[Path, ScreenRun, TileSettings],
) -> None:
    root, run, settings = screened
    answers = build_answers(root, run.shards, run.blocks, settings)
    table = answers.per_target.set_index(["target_id", "drug_id"])
    shared = 0
    for target in {"t0", "t1"}:
        for original in range(10):
            if (target, f"m{original}") in table.index and (target, f"m{original + 60}") in table.index:
                a, b = table.loc[(target, f"m{original}")], table.loc[(target, f"m{original + 60}")]
                assert a["rank_in_target"] == b["rank_in_target"] and a["logit"] == b["logit"]
                shared += 1
    assert shared >= 1  # at least one copied pair made a top list (the library is small, TOP = 5)


def test_every_table_reports_the_calibrated_score_of_the_checkpoints_temperature(
    screened: tuple[Path, ScreenRun, TileSettings],
) -> None:
    root, run, settings = screened
    plain = build_answers(root, run.shards, run.blocks, settings)
    scaled = build_answers(root, run.shards, run.blocks, settings, temperature=Temperature(2.0, fitted=True))
    for got, base in (
        (scaled.per_target, plain.per_target),
        (scaled.per_drug, plain.per_drug),
        (scaled.repurposing, plain.repurposing),
    ):
        assert list(got.columns).index(CALIBRATED_COLUMN) == list(got.columns).index("score") + 1
        assert (base[CALIBRATED_COLUMN] == base["score"]).all()  # no temperature: T = 1
        logits = got["logit"].to_numpy(np.float64)
        np.testing.assert_allclose(got[CALIBRATED_COLUMN], 1 / (1 + np.exp(-logits / 2.0)), rtol=1e-6)
        pd.testing.assert_frame_equal(got.drop(columns=CALIBRATED_COLUMN), base.drop(columns=CALIBRATED_COLUMN))
