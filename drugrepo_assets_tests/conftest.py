"""Fixtures shared by the whole test suite."""

from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """Folder of the reference DrugBAN stack's golden outputs; fail loudly when it is missing."""
    if not GOLDEN_DIR.is_dir():
        pytest.fail(f"golden data folder not found: {GOLDEN_DIR}", pytrace=False)
    return GOLDEN_DIR
