"""The API's target terms through the store ``drugrepo screen --target-terms`` fills (``DRUGREPO_TARGET_TERMS``):
real ``drugrepo serve`` replicas on the golden checkpoint write the terms they compute, a cold replica answers
from them, the CLI and the API write the same file for a sequence, and a store that fails never fails a request."""

import shutil
import subprocess
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from drugrepo_assets.api.metrics import ApiMetrics
from drugrepo_assets.api.runtime import terms_supply
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.api.stored_terms import BUDGET, COMPUTED, CORRUPT, READ, STORE, WRITE, TermsSupply
from drugrepo_assets.data.rules import clean_protein
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.screening.engine import ScreeningEngine
from drugrepo_assets.screening.terms import TARGET_TERMS_ENV, TargetTermStore, term_key, terms_bytes
from drugrepo_assets_tests.api.servers import BIN, Api, metric_value, running_api

KEY = "key-terms"
TERMS = "drugrepo_target_terms_total"
ERRORS = "drugrepo_target_terms_store_errors_total"


@dataclass
class Warmed:
    """What a first replica left: the store it wrote into, its answer to one /v1/screen and its metrics."""

    store: Path
    checkpoint_id: str
    protein: str
    smiles: list[str]
    answer: dict
    metrics: str

    def terms_file(self, store: Path | None = None, protein: str | None = None) -> Path:
        """Where a protein's terms (this one's by default) live in ``store`` (the first replica's by default)."""
        at = TargetTermStore(store or self.store, self.checkpoint_id)
        return Path(at.path(term_key(clean_protein(protein or self.protein))))


def _replica(folder: Path, golden_dir: Path, store: Path) -> AbstractContextManager[Api]:
    """A ``drugrepo serve`` of the golden checkpoint keeping target terms in ``store``."""
    return running_api(
        folder,
        ["--checkpoint", str(golden_dir / "model_state.pt")],
        {"DRUGREPO_API_KEYS": KEY, TARGET_TERMS_ENV: str(store)},
    )


def _screen(api: Api, protein: str, smiles: list[str]) -> httpx.Response:
    return httpx.post(
        api.url + "/v1/screen", json={"protein": protein, "smiles": smiles}, headers={"X-API-Key": KEY}, timeout=120
    )


def _metrics(api: Api) -> str:
    return httpx.get(api.url + "/metrics", timeout=30).text


@pytest.fixture(scope="module")
def golden_pairs(golden_dir: Path) -> pd.DataFrame:
    """The golden checkpoint's pairs (proteins and SMILES to ask about)."""
    return pd.read_csv(golden_dir / "model_pairs.csv", dtype=str)


@pytest.fixture(scope="module")
def warmed(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path, golden_pairs: pd.DataFrame) -> Warmed:
    """A first replica with an empty store answers one /v1/screen (a golden protein, 8 golden SMILES)."""
    folder = tmp_path_factory.mktemp("first")
    store = folder / "terms"
    protein = golden_pairs["Protein"].iloc[0]
    smiles = list(dict.fromkeys(golden_pairs["SMILES"]))[:8]
    with _replica(folder, golden_dir, store) as api:
        response = _screen(api, protein, smiles)
        assert response.status_code == 200, response.text
        metrics = _metrics(api)
    answer = response.json()
    return Warmed(store, answer["checkpoint_id"], protein, smiles, answer, metrics)


def test_a_replica_writes_the_terms_it_computes_into_the_store(warmed: Warmed) -> None:
    assert warmed.terms_file().is_file()
    assert [p.name for p in (warmed.store / warmed.checkpoint_id).rglob("*.npy")] == [warmed.terms_file().name]
    assert metric_value(warmed.metrics, TERMS, {"source": COMPUTED}) == 1
    assert metric_value(warmed.metrics, TERMS, {"source": STORE}) == 0


def test_a_cold_replica_answers_from_the_store_with_identical_scores(
    warmed: Warmed, golden_dir: Path, tmp_path: Path
) -> None:
    written = warmed.terms_file().stat().st_mtime_ns
    with _replica(tmp_path, golden_dir, warmed.store) as api:
        response = _screen(api, warmed.protein, warmed.smiles)
        assert response.status_code == 200, response.text
        assert response.json()["results"] == warmed.answer["results"]  # logits and scores to the last bit
        first = _metrics(api)
        assert _screen(api, warmed.protein, warmed.smiles).json()["results"] == warmed.answer["results"]
        second = _metrics(api)
    assert metric_value(first, TERMS, {"source": STORE}) == 1
    assert metric_value(first, TERMS, {"source": COMPUTED}) == 0
    assert metric_value(second, TERMS, {"source": "cache"}) == 1  # the cache stays the first level
    assert warmed.terms_file().stat().st_mtime_ns == written  # read, not rewritten


def test_the_api_and_drugrepo_screen_write_the_same_terms_to_one_store(
    warmed: Warmed, golden_dir: Path, tmp_path: Path
) -> None:
    pd.DataFrame({"id": [f"m{i}" for i in range(len(warmed.smiles))], "SMILES": warmed.smiles}).to_csv(
        tmp_path / "lib.csv", index=False
    )
    (tmp_path / "t.fasta").write_text(f">t0\n{warmed.protein}\n")
    cli_store = tmp_path / "cli-terms"
    subprocess.run(
        [
            str(BIN / "drugrepo"),
            "screen",
            "--checkpoint",
            str(golden_dir / "model_state.pt"),
            "--library",
            str(tmp_path / "lib.csv"),
            "--targets",
            str(tmp_path / "t.fasta"),
            "--out",
            str(tmp_path / "run"),
            "--target-terms",
            str(cli_store),
            "--threads",
            "1",
            "--quiet",
        ],
        check=True,
        capture_output=True,
    )
    written = warmed.terms_file(cli_store)
    assert written.relative_to(cli_store) == warmed.terms_file().relative_to(warmed.store)  # one layout, one key
    width = ScreeningEngine(load_checkpoint(str(golden_dir / "model_state.pt")).model).term_width
    key = term_key(clean_protein(warmed.protein))
    by_cli = TargetTermStore(cli_store, warmed.checkpoint_id).load([key], width)
    by_api = TargetTermStore(warmed.store, warmed.checkpoint_id).load([key], width)
    assert torch.equal(by_cli.gq, by_api.gq) and torch.equal(by_cli.sq, by_api.sq)


def test_a_corrupt_stored_file_is_counted_and_the_request_answered_from_computed_terms(
    warmed: Warmed, golden_dir: Path, golden_pairs: pd.DataFrame, tmp_path: Path
) -> None:
    store = tmp_path / "terms"
    shutil.copytree(warmed.store, store)
    warmed.terms_file(store).write_bytes(b"not a terms file")
    other = next(p for p in golden_pairs["Protein"] if clean_protein(p) != clean_protein(warmed.protein))
    other_file = warmed.terms_file(store, other)
    other_file.parent.mkdir(parents=True, exist_ok=True)
    np.save(other_file, np.zeros(5, dtype=np.float32))  # a whole .npy, the wrong size
    with _replica(tmp_path, golden_dir, store) as api:
        response = _screen(api, warmed.protein, warmed.smiles)
        assert response.status_code == 200, response.text
        assert response.json()["results"] == warmed.answer["results"]
        assert _screen(api, other, warmed.smiles).status_code == 200
        metrics = _metrics(api)
    assert metric_value(metrics, ERRORS, {"kind": CORRUPT}) == 2
    assert metric_value(metrics, TERMS, {"source": COMPUTED}) == 2
    assert metric_value(metrics, TERMS, {"source": STORE}) == 0
    logged = [line for line in api.log.read_text().splitlines() if "corrupt failure" in line]
    assert len(logged) == 1 and warmed.terms_file(store).name in logged[0]  # once per kind, naming the file
    assert warmed.terms_file(store).read_bytes() == warmed.terms_file().read_bytes()  # replaced by the computed terms


@pytest.fixture(scope="module")
def engine(golden_dir: Path) -> ScreeningEngine:
    """The screening engine of the golden checkpoint, in this process."""
    return ScreeningEngine(load_checkpoint(str(golden_dir / "model_state.pt")).model)


def test_a_store_that_cannot_be_read_or_written_leaves_the_terms_computed(
    engine: ScreeningEngine, golden_pairs: pd.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    sources = Counter("terms", "", ["source"], registry=registry)
    failures = Counter("errors", "", ["kind"], registry=registry)
    protein = clean_protein(golden_pairs["Protein"].iloc[0])
    expected, _ = TermsSupply().terms(engine, protein, None)

    (tmp_path / "a-file").write_text("a file where the store's folder should be")
    unwritable = TermsSupply(str(tmp_path / "a-file"), sources, failures)
    terms, source = unwritable.terms(engine, protein, unwritable.store("ckpt"))
    assert source == COMPUTED and torch.equal(terms.gq, expected.gq)

    unreadable = TermsSupply(str(tmp_path / "terms"), sources, failures)
    store = unreadable.store("ckpt")
    assert store is not None
    Path(store.path(term_key(protein))).mkdir(parents=True)  # a folder where the file should be
    for _ in range(2):
        terms, source = unreadable.terms(engine, protein, store)
        assert source == COMPUTED and torch.equal(terms.sq, expected.sq)

    assert registry.get_sample_value("errors_total", {"kind": WRITE}) == 1
    assert registry.get_sample_value("errors_total", {"kind": READ}) == 2
    logged = [r.getMessage() for r in caplog.records if r.name == "drugrepo_assets.api.stored_terms"]
    assert [sum(f"{kind} failure" in m for m in logged) for kind in (WRITE, READ)] == [1, 1]  # once per kind


def test_a_replica_stops_storing_at_its_write_budget_and_still_answers(
    engine: ScreeningEngine, golden_pairs: pd.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Requests for ever new sequences cannot fill the store: past the budget a target's terms are computed,
    answered and counted (kind budget, logged once), not stored; what was stored is still read."""
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    sources = Counter("terms", "", ["source"], registry=registry)
    failures = Counter("errors", "", ["kind"], registry=registry)
    proteins = [clean_protein(p) for p in golden_pairs["Protein"].drop_duplicates().iloc[:3]]
    supply = TermsSupply(str(tmp_path / "terms"), sources, failures, write_budget_bytes=terms_bytes(engine.term_width))
    store = supply.store("ckpt")
    assert store is not None
    for protein in proteins:
        terms, source = supply.terms(engine, protein, store)
        expected, _ = TermsSupply().terms(engine, protein, None)
        assert source == COMPUTED and torch.equal(terms.gq, expected.gq) and torch.equal(terms.sq, expected.sq)
    assert [Path(store.path(term_key(p))).exists() for p in proteins] == [True, False, False]
    assert Path(store.path(term_key(proteins[0]))).stat().st_size >= terms_bytes(engine.term_width)
    assert registry.get_sample_value("errors_total", {"kind": BUDGET}) == 2
    logged = [r.getMessage() for r in caplog.records if r.name == "drugrepo_assets.api.stored_terms"]
    assert sum(f"{BUDGET} failure" in m for m in logged) == 1
    assert supply.terms(engine, proteins[0], store)[1] == STORE


def test_the_write_budget_is_read_from_drugrepo_target_terms_write_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServingSettings().target_terms_write_mib == 1024
    monkeypatch.setenv("DRUGREPO_TARGET_TERMS_WRITE_MIB", "3")
    assert terms_supply(ServingSettings(), ApiMetrics()).write_budget_bytes == 3 * 2**20


def test_the_store_location_is_read_from_drugrepo_target_terms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TARGET_TERMS_ENV, "s3://bucket/terms")
    assert ServingSettings().target_terms == "s3://bucket/terms"
    monkeypatch.delenv(TARGET_TERMS_ENV)
    assert ServingSettings().target_terms is None
