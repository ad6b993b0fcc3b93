"""Small real fixtures: rows taken verbatim from the bundled DrugBAN files, and a CSV writer."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from drugrepo_assets.data.sources import bundled_root

HEADER = ("SMILES", "Protein", "Y")


def real_rows(relative: str, rows: Sequence[int]) -> list[tuple[str, str, str]]:
    """The given 1-based data rows of a bundled file, as the exact strings in the file."""
    with open(bundled_root() / relative, newline="", encoding="utf-8") as handle:
        records = list(csv.reader(handle))
    assert tuple(records[0]) == HEADER
    return [tuple(records[i]) for i in rows]


def write_csv(path: Path, rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> Path:
    """Write ``rows`` under ``header`` as a UTF-8 CSV (creating folders) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path
