"""The input rules: exact verdicts, the pre-parse atom count as a true lower bound (Hypothesis), and one
verdict per edge case from every core reader (validation, predict, screen, the compact featuriser)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rdkit import Chem, rdBase

from drugrepo_assets.data.rules import (
    LABEL_VALUES,
    MAX_DRUG_ATOMS,
    PROTEIN_ALPHABET,
    RULE_CODES,
    Refusal,
    clean_protein,
    label_refusal,
    parse_label,
    parse_smiles,
    protein_refusal,
    smiles_refusal,
)
from drugrepo_assets.data.validate import validate_pairs
from drugrepo_assets.ml.features.featurize import compact_molecules
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.ml.predict import score_table
from drugrepo_assets.screening.engine import prepare_library, prepare_targets
from drugrepo_assets_tests.edge_cases import PROTEIN_CASES, SMILES_CASES, protein_verdict, smiles_verdict

PROTEIN = PROTEIN_CASES["plain"]
SMILES_ALPHABET = "CNOSPFIBcnosp()[]=#@+-123456789%.HClBr*/\\ 2"
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_refusals_name_field_code_and_limit() -> None:
    assert parse_smiles("C" * 291)[1] == Refusal(
        "too_many_atoms", "SMILES", "at least 291 atoms, more than the limit of 290"
    )
    assert parse_smiles("C" * 289 + ".[H][H]")[1] == Refusal(
        "too_many_atoms", "SMILES", "291 atoms, more than the limit of 290"
    )
    assert str(parse_smiles("")[1]) == "SMILES: value is empty"
    mol, refusal = parse_smiles("  [2H]C([2H])([2H])O ")
    assert refusal is None and mol.GetNumAtoms() == 5  # deuterium is an atom of the model's graph
    assert protein_refusal("ßﬀıſ").code == "invalid_protein" and "ß".upper() == "SS"
    assert clean_protein(" mkt\n") == "MKT" and clean_protein("ß") == "ß"
    assert label_refusal("yes").code == "invalid_label" and label_refusal(" ").code == "missing_value"
    assert [parse_label(v) for v in LABEL_VALUES] == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="Y: label '2' is not one of"):
        parse_label("2")


@PROPERTY
@given(st.text(alphabet=SMILES_ALPHABET, max_size=400))
def test_the_pre_parse_atom_count_never_exceeds_the_parsed_atoms(smiles: str) -> None:
    """The text's atom symbols are a lower bound of RDKit's atoms, so refusing on them never refuses a
    molecule the model could take; any verdict is a documented refusal, never an exception."""
    mol, refusal = parse_smiles(smiles)
    if refusal is not None:
        assert refusal.code in RULE_CODES and str(refusal).startswith("SMILES: ")
        return
    assert 0 < mol.GetNumAtoms() <= MAX_DRUG_ATOMS
    from drugrepo_assets.data.rules import _ATOM_TOKEN

    assert len(_ATOM_TOKEN.findall(smiles.strip())) <= mol.GetNumAtoms()


@PROPERTY
@given(st.text(max_size=300))
def test_any_unicode_gets_a_verdict(text: str) -> None:
    for verdict in (parse_smiles(text)[1], smiles_refusal(text.strip()), protein_refusal(text), label_refusal(text)):
        assert verdict is None or verdict.code in RULE_CODES


@PROPERTY
@given(st.text(max_size=200))
def test_an_accepted_protein_is_in_the_alphabet_once_cleaned(text: str) -> None:
    if protein_refusal(text) is None:
        assert set(clean_protein(text)) <= set(PROTEIN_ALPHABET) and clean_protein(text)


@PROPERTY
@given(st.binary(max_size=200))
def test_random_bytes_decoded_any_way_get_a_verdict(data: bytes) -> None:
    text = data.decode("utf-8", errors="surrogateescape")  # lone surrogates, as a lenient reader would pass them
    with rdBase.BlockLogs():
        assert parse_smiles(text)[1] is None or parse_smiles(text)[1].code in RULE_CODES
    assert protein_refusal(text) is None or protein_refusal(text).code in RULE_CODES


def test_canonical_ranking_is_never_reached_for_a_refused_molecule() -> None:
    """A 20k-atom chain is refused on its text: RDKit never parses it (parsing would take seconds)."""
    calls = []
    original = Chem.MolFromSmiles
    Chem.MolFromSmiles = lambda *a, **k: calls.append(a) or original(*a, **k)
    try:
        assert parse_smiles("C" * 9_999)[1].code == "too_many_atoms"
        assert parse_smiles("C1" + "C" * 9_000 + "1")[1].code == "too_many_atoms"
    finally:
        Chem.MolFromSmiles = original
    assert calls == []


# --- one verdict per edge case, from every core reader -------------------------------------------


def _validation_verdicts(smiles: list[str], proteins: list[str]) -> list[str]:
    """Validation's reason per row ('' for a valid row); rows are made distinct so none is a duplicate."""
    labels = [["0", "1"][i % 2] for i in range(len(smiles))]
    raw = pd.DataFrame({"SMILES": smiles, "Protein": proteins, "Y": labels})
    result = validate_pairs(raw)
    reasons = dict(zip(result.rejected["source_row"], result.rejected["reason"]))
    return [reasons.get(i + 1, "") for i in range(len(smiles))]


def test_validation_gives_the_rules_verdicts() -> None:
    smiles = list(SMILES_CASES.values())
    distinct = [PROTEIN + "A" * i for i in range(len(smiles))]
    assert _validation_verdicts(smiles, distinct) == [smiles_verdict(s) for s in smiles]
    proteins = list(PROTEIN_CASES.values())
    molecules = ["C" * (i + 1) for i in range(len(proteins))]
    assert _validation_verdicts(molecules, proteins) == [protein_verdict(p) for p in proteins]


def test_predict_gives_the_rules_verdicts(golden_dir) -> None:
    model = load_checkpoint(str(golden_dir / "model_state.pt")).model
    smiles = list(SMILES_CASES.values())
    scored = score_table(model, pd.DataFrame({"SMILES": smiles, "Protein": [PROTEIN] * len(smiles)})).table
    assert scored["error"].tolist() == [smiles_verdict(s) for s in smiles]
    assert scored["logit"].notna().tolist() == [smiles_verdict(s) == "" for s in smiles]
    proteins = list(PROTEIN_CASES.values())
    scored = score_table(model, pd.DataFrame({"SMILES": ["CCO"] * len(proteins), "Protein": proteins})).table
    assert scored["error"].tolist() == [protein_verdict(p) for p in proteins]


def test_screening_readers_give_the_rules_verdicts() -> None:
    smiles = list(SMILES_CASES.values())
    _, prepared = prepare_library(pd.DataFrame({"id": list(SMILES_CASES), "smiles": smiles}))
    refused = dict(zip(prepared.rejected["id"], prepared.rejected["reason"]))
    assert [refused.get(name, "") for name in SMILES_CASES] == [smiles_verdict(s) for s in smiles]
    _, compact_refused, _ = compact_molecules(smiles)
    by_position = dict(compact_refused)
    assert [by_position.get(i, "") for i in range(len(smiles))] == [smiles_verdict(s) for s in smiles]
    proteins = list(PROTEIN_CASES.values())
    _, targets = prepare_targets(pd.DataFrame({"id": list(PROTEIN_CASES), "sequence": proteins}))
    refused = dict(zip(targets.rejected["id"], targets.rejected["reason"]))
    assert [refused.get(name, "") for name in PROTEIN_CASES] == [protein_verdict(p) for p in proteins]
