"""Property (Hypothesis): generated bridged ring systems (`drugrepo_assets_tests.molecules`: size, offset,
element, aromaticity, a query atom) each get one verdict within the molecule budget from every command.

Each example is a CSV of a few cages and one plain molecule: the real ``drugrepo validate`` reads it in
a subprocess (a hang would pass the outer guard and fail), and predict's and the screen's readers
(`ml.predict.score_table`, `screening.library.FeaturePool`) give their verdicts on the same SMILES.
Every verdict is the input rules' (`data.rules.parse_smiles` in this process), except that a
`BridgedRings.near_budget` cage, whose RDKit time is within a few times the budget, may be refused
``over_budget`` instead by any of them: which one depends on the machine, never the command.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.ml.predict import score_table
from drugrepo_assets.screening.library import FeaturePool
from drugrepo_assets_tests.cli.helpers import console_script
from drugrepo_assets_tests.data.rows import write_csv
from drugrepo_assets_tests.edge_cases import smiles_verdict
from drugrepo_assets_tests.molecules import BridgedRings, bridged_ring_systems

PROTEIN = "MKTAYIAKQRQISFVKSHFSRQ"
OVER_BUDGET = "SMILES: RDKit's work on it passed"
"""How an ``over_budget`` refusal's text begins (`rules.over_budget_refusal`)."""
HANG_GUARD_S = 600


@pytest.fixture(scope="module")
def model(golden_dir: Path) -> DrugBAN:
    return load_checkpoint(str(golden_dir / "model_state.pt")).model


@pytest.fixture(scope="module")
def screen_pool() -> Iterator[FeaturePool]:
    with FeaturePool(1) as pool:
        yield pool


def _validate_verdicts(smiles: list[str]) -> list[str]:
    """``drugrepo validate``'s reason per row ('' when valid); distinct proteins so that no row is a duplicate."""
    with tempfile.TemporaryDirectory() as folder:
        rows = [(s, PROTEIN + "A" * i, str(i % 2)) for i, s in enumerate(smiles)]
        pairs = write_csv(Path(folder) / "pairs.csv", rows)
        done = subprocess.run(
            [console_script(), "validate", str(pairs), "--out", f"{folder}/out"],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        rejected = pd.read_parquet(f"{folder}/out/rejected.parquet")
    reasons = dict(zip(rejected["source_row"], rejected["reason"]))
    return [reasons.get(row, "") for row in range(1, len(smiles) + 1)]


@pytest.mark.scale
@settings(max_examples=15, deadline=None)
@given(systems=st.lists(bridged_ring_systems(), min_size=1, max_size=5))
def test_bridged_ring_systems_get_one_verdict_within_the_budget_from_every_command(
    systems: list[BridgedRings], model: DrugBAN, screen_pool: FeaturePool
) -> None:
    smiles = [system.smiles for system in systems] + ["CCO"]
    validated = _validate_verdicts(smiles)
    predicted = score_table(model, pd.DataFrame({"SMILES": smiles, "Protein": PROTEIN})).table["error"].tolist()
    _, refused, _ = screen_pool.result(screen_pool.submit(smiles))
    screened = [dict(refused).get(i, "") for i in range(len(smiles))]
    for i, system in enumerate([*systems, None]):
        rules = smiles_verdict(smiles[i])
        verdicts = {"validate": validated[i], "predict": predicted[i], "screen": screened[i]}
        allowed = {rules} | (
            {v for v in verdicts.values() if v.startswith(OVER_BUDGET)} if system and system.near_budget else set()
        )
        assert set(verdicts.values()) <= allowed, (system, verdicts, rules)
