"""One table of edge-case inputs (edge_cases.py), one verdict from every surface: `drugrepo validate`,
`predict`, `train` and `screen`, and the API (the screening assets: assets/test_screening.py; the core
readers: data/test_rules.py). A verdict is the input rules' refusal, or none for an accepted value."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pandas as pd
import pytest

from drugrepo_assets.api.app import create_app
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.cli import main
from drugrepo_assets_tests.data.rows import real_rows, write_csv
from drugrepo_assets_tests.edge_cases import PROTEIN_CASES, SMILES_CASES, protein_verdict, smiles_verdict

PROTEIN = PROTEIN_CASES["plain"]
FILE_SMILES = {name: s for name, s in SMILES_CASES.items() if name != "nul"}  # a CSV cannot hold a NUL
TRAINING_ROWS = real_rows("human/random/train.csv", range(1, 81))  # enough real pairs for `train` to run


def _pairs_rows() -> list[tuple[str, str, str]]:
    """Every SMILES case with a valid protein, then every protein case with a valid SMILES: no two alike."""
    rows = [(s, PROTEIN + "A" * i, str(i % 2)) for i, s in enumerate(FILE_SMILES.values())]
    rows += [("C" * (i + 1), p, str(i % 2)) for i, p in enumerate(PROTEIN_CASES.values())]
    return rows


EXPECTED = [smiles_verdict(s) for s in FILE_SMILES.values()] + [protein_verdict(p) for p in PROTEIN_CASES.values()]


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "pairs.csv", _pairs_rows() + TRAINING_ROWS)


def _by_row(rows: pd.Series, reasons: pd.Series, n: int) -> list[str]:
    found = dict(zip(rows.astype(int), reasons.astype(str)))
    return [found.get(row, "") for row in range(1, n + 1)]


def test_validate_and_train_give_the_rules_verdicts(pairs: Path, tmp_path: Path, golden_dir: Path) -> None:
    main(["validate", str(pairs), "--out", str(tmp_path / "v")])
    rejected = pd.read_parquet(tmp_path / "v" / "rejected.parquet")
    assert _by_row(rejected["source_row"], rejected["reason"], len(EXPECTED)) == EXPECTED
    assert (
        main(["train", "--data", str(pairs), "--out", str(tmp_path / "t"), "--epochs", "1", "--batch-size", "16"]) == 0
    )
    refused = pd.read_parquet(tmp_path / "t" / "data_rejected.parquet")
    assert _by_row(refused["source_row"], refused["reason"], len(EXPECTED)) == EXPECTED
    assert (tmp_path / "t" / "best.pt").stat().st_size > 0


def test_predict_gives_the_rules_verdicts(pairs: Path, tmp_path: Path, golden_dir: Path) -> None:
    out = tmp_path / "scored.csv"
    main(["predict", "--checkpoint", str(golden_dir / "model_state.pt"), "--pairs", str(pairs), "--out", str(out)])
    scored = pd.read_csv(out, keep_default_na=False, dtype=str)
    assert scored["error"].tolist()[: len(EXPECTED)] == EXPECTED
    assert [logit != "" for logit in scored["logit"][: len(EXPECTED)]] == [v == "" for v in EXPECTED]


def test_screen_gives_the_rules_verdicts(tmp_path: Path, golden_dir: Path) -> None:
    library = write_csv(tmp_path / "lib.csv", list(FILE_SMILES.items()), header=("id", "smiles"))
    targets = write_csv(
        tmp_path / "targets.csv", [(name, p) for name, p in PROTEIN_CASES.items()], header=("id", "sequence")
    )
    out = tmp_path / "screen"
    main(
        [
            "screen",
            "--checkpoint",
            str(golden_dir / "model_state.pt"),
            "--library",
            str(library),
            "--targets",
            str(targets),
            "--out",
            str(out),
            "--top",
            "3",
            "--quiet",
        ]
    )
    rejected = pd.read_csv(out / "rejected.csv", keep_default_na=False, dtype=str)
    molecules = dict(
        zip(rejected.loc[rejected["kind"] == "molecule", "id"], rejected.loc[rejected["kind"] == "molecule", "reason"])
    )
    assert [molecules.get(name, "") for name in FILE_SMILES] == [smiles_verdict(s) for s in FILE_SMILES.values()]
    proteins = dict(
        zip(rejected.loc[rejected["kind"] == "target", "id"], rejected.loc[rejected["kind"] == "target", "reason"])
    )
    assert [proteins.get(name, "") for name in PROTEIN_CASES] == [protein_verdict(p) for p in PROTEIN_CASES.values()]


def test_the_api_gives_the_rules_verdicts(golden_dir: Path, tmp_path: Path) -> None:
    settings = ServingSettings(
        api_keys="k",
        checkpoint=str(golden_dir / "model_state.pt"),
        request_log_dir=str(tmp_path / "requests"),
        model_refresh_seconds=0,
    )
    app = create_app(settings)
    smiles_pairs = [{"smiles": s, "protein": PROTEIN} for s in SMILES_CASES.values()]
    protein_pairs = [{"smiles": "CCO", "protein": p} for p in PROTEIN_CASES.values()]

    async def post_both() -> list[httpx.Response]:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
        ):
            return [
                await client.post("/v1/predict", json={"pairs": pairs}, headers={"X-API-Key": "k"})
                for pairs in (smiles_pairs, protein_pairs)
            ]

    def problems(response: httpx.Response) -> dict[int, str]:
        assert response.status_code == 422, response.text
        return {p["index"]: f"{p['field']}: {p['message']}" for p in response.json()["errors"]}

    for_smiles, for_proteins = asyncio.run(post_both())
    by_index = problems(for_smiles)
    expected = [smiles_verdict(s) for s in SMILES_CASES.values()]
    assert [by_index.get(i, "").replace("smiles: ", "SMILES: ") for i in range(len(smiles_pairs))] == expected
    by_index = problems(for_proteins)
    expected = [protein_verdict(p) for p in PROTEIN_CASES.values()]
    assert [by_index.get(i, "").replace("protein: ", "Protein: ") for i in range(len(protein_pairs))] == expected
