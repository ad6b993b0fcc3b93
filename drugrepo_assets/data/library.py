"""Readers for screening inputs: compound libraries (CSV ``id,SMILES`` or ``.smi``) and targets (FASTA or CSV).

Both return tables of strings with the line each entry came from, so every report can point at it.
A file that cannot be used at all is an :class:`InputFileError` naming it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from drugrepo_assets.data.sources import InputFileError

__all__ = ["read_library", "read_targets"]


def _text(path: Path) -> str:
    if not path.is_file():
        raise InputFileError(str(path), "file not found")
    data = path.read_bytes()
    if not data.strip():
        raise InputFileError(str(path), "empty file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(str(path), f"not valid UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def read_library(path: str | Path) -> pd.DataFrame:
    """Library as columns ``id``, ``smiles``, ``line``: a CSV with ``id`` and ``SMILES`` columns
    (case-insensitive), or a ``.smi`` file of ``SMILES [id]`` lines (id defaults to the line number)."""
    path = Path(path)
    text = _text(path)
    if path.suffix.lower() in (".smi", ".smiles", ".txt"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            parts = line.split(None, 1)
            if parts and not line.startswith("#"):
                rows.append((parts[1].strip() if len(parts) > 1 else f"line{number}", parts[0], number))
        table = pd.DataFrame(rows, columns=["id", "smiles", "line"])
    else:
        try:
            raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except pd.errors.ParserError as exc:
            raise InputFileError(str(path), f"cannot parse CSV ({str(exc).splitlines()[0]})") from None
        columns = {c.lower(): c for c in raw.columns}
        missing = [c for c in ("id", "smiles") if c not in columns]
        if missing:
            raise InputFileError(str(path), f"missing column {' and '.join(map(repr, missing))} (found: {', '.join(raw.columns)})")
        table = pd.DataFrame({"id": raw[columns["id"]], "smiles": raw[columns["smiles"]], "line": range(2, len(raw) + 2)})
    if table.empty:
        raise InputFileError(str(path), "no molecules")
    return table


def read_targets(path: str | Path) -> pd.DataFrame:
    """Targets as columns ``id``, ``sequence``, ``line``: FASTA (``>id description`` then sequence
    lines) or a CSV with ``id`` and ``sequence`` (or ``Protein``) columns."""
    path = Path(path)
    text = _text(path)
    if text.lstrip().startswith(">"):
        rows: list[list] = []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if line.startswith(">"):
                name = line[1:].split(None, 1)
                rows.append([name[0] if name else f"line{number}", "", number])
            elif line and rows:
                rows[-1][1] += line
        table = pd.DataFrame(rows, columns=["id", "sequence", "line"])
    else:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        columns = {c.lower(): c for c in raw.columns}
        seq = columns.get("sequence") or columns.get("protein")
        if "id" not in columns or seq is None:
            raise InputFileError(str(path), f"expected FASTA, or CSV columns 'id' and 'sequence' (found: {', '.join(raw.columns)})")
        table = pd.DataFrame({"id": raw[columns["id"]], "sequence": raw[seq], "line": range(2, len(raw) + 2)})
    if table.empty:
        raise InputFileError(str(path), "no sequences")
    return table
