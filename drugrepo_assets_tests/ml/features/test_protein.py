"""Protein encoding must reproduce the reference DrugBAN's ``integer_label_protein`` exactly."""

import logging
from pathlib import Path

import numpy as np
import pytest

from drugrepo_assets.data.rules import PROTEIN_ALPHABET
from drugrepo_assets.ml.features.protein import encode_protein, encode_proteins


@pytest.fixture(scope="module")
def golden_proteins(golden_dir: Path) -> dict[str, np.ndarray]:
    """The reference's integer_label_protein encodings (protein.npz), loaded once."""
    with np.load(golden_dir / "protein.npz") as data:
        return {key: data[key] for key in data.files}


def test_every_golden_protein_is_reproduced_exactly(golden_proteins: dict[str, np.ndarray]) -> None:
    """encode_protein and encode_proteins equal integer_label_protein on all 151 sequences."""
    sequences = [str(s) for s in golden_proteins["sequences"]]
    expected = golden_proteins["encoding"]
    assert len(sequences) == 151 and expected.shape == (151, 1200)
    for sequence, row in zip(sequences, expected):
        encoded = encode_protein(sequence)
        assert encoded.dtype == np.int64 and encoded.shape == (1200,)
        assert np.array_equal(encoded, row)
    batch = encode_proteins(sequences)
    assert batch.dtype == np.int64
    assert np.array_equal(batch, expected)


def test_protein_alphabet_and_case_folding() -> None:
    """Codes follow DrugBAN's table order; lower case and str.upper() folds match it."""
    assert PROTEIN_ALPHABET == "ACBEDGFIHKMLONQPSRUTWVYXZ"
    assert encode_protein(PROTEIN_ALPHABET, 25).tolist() == list(range(1, 26))
    assert encode_protein("acbı", 6).tolist() == [1, 2, 3, 8, 0, 0]
    assert encode_protein("ACDEF", 3).tolist() == [1, 2, 5]
    assert np.array_equal(
        encode_proteins(["acd", "ıſé", "MKV"], 4),
        np.array([[1, 2, 5, 0], [8, 17, 0, 0], [11, 10, 22, 0]]),
    )


def test_unknown_protein_characters_warn_once_per_call(caplog: pytest.LogCaptureFixture) -> None:
    """Characters outside the alphabet become 0 and are named in a single warning."""
    with caplog.at_level(logging.WARNING, logger="drugrepo_assets.ml.features.protein"):
        assert encode_protein("MJ*J", 5).tolist() == [11, 0, 0, 0, 0]
        assert len(caplog.records) == 1
        assert "'J'" in caplog.text and "'*'" in caplog.text
        caplog.clear()
        encode_proteins(["A1", "B-", "C" * 10 + "?"], 10)
        assert len(caplog.records) == 1
        assert "'1'" in caplog.text and "'-'" in caplog.text and "'?'" not in caplog.text
        caplog.clear()
        encode_proteins(["ACD"])
        assert caplog.records == []
