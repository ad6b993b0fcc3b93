"""Stage 1, the library: a stream of molecules cut into shards in read order, each featurised in a sandbox.

The library arrives as a stream of row chunks (`data.library.iter_library`: any location, any size);
`iter_shards` cuts it into shards of ``shard_size`` rows, and a `FeaturePool` featurises a shard's
SMILES into compact codes in sandbox workers (RDKit and numpy only there, each molecule within its
CPU and memory budget, `data.sandbox`) while the caller scores the previous one. A shard is named by
the content it read (`shard_digest`), so a rerun, a retry or a grown library finds its tiles again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from drugrepo_assets.data.sandbox import Budget, molecule_sandbox
from drugrepo_assets.data.sandbox import default_workers as default_workers  # where the CLI and assets find it
from drugrepo_assets.ml.features.featurize import MAX_DRUG_NODES, CompactMolecules, compact_molecule, compact_molecules

REJECTED_COLUMNS = ["kind", "file", "line", "id", "value", "reason"]
"""A refused row, whatever refused it: what it is (molecule or target), where it was read, and why."""


@dataclass
class LibraryShard:
    """Molecules ``rows`` (``id, smiles, file, line``) of shard ``index``, and the rows refused while reading."""

    index: int
    rows: pd.DataFrame
    rejected: pd.DataFrame


def iter_shards(chunks: Iterable[Any], shard_size: int) -> Iterator[LibraryShard]:
    """Cut a stream of reader chunks (``.rows``, ``.rejected``) into shards of ``shard_size`` rows.

    A chunk's refused rows go with the shard being filled when the chunk arrives.
    """
    held: list[pd.DataFrame] = []
    held_rows = 0
    refused: list[pd.DataFrame] = []
    index = 0
    for chunk in chunks:
        if len(chunk.rejected):
            refused.append(chunk.rejected)
        held.append(chunk.rows)
        held_rows += len(chunk.rows)
        while held_rows >= shard_size:
            rows = pd.concat(held, ignore_index=True)
            yield LibraryShard(index, rows.iloc[:shard_size].reset_index(drop=True), _concat_rejected(refused))
            index, refused = index + 1, []
            held, held_rows = [rows.iloc[shard_size:]], len(rows) - shard_size
    if held_rows or refused or index == 0:
        rows = pd.concat(held, ignore_index=True) if held else pd.DataFrame(columns=["id", "smiles", "file", "line"])
        yield LibraryShard(index, rows.reset_index(drop=True), _concat_rejected(refused))


def refuse(shard: LibraryShard, refused: Sequence[tuple[int, str]]) -> LibraryShard:
    """The shard without its rows at the positions ``refused`` names, which join its refused rows with their reason."""
    bad = shard.rows.iloc[[i for i, _ in refused]]
    rejected = bad.assign(kind="molecule", value=bad["smiles"], reason=[r for _, r in refused])[REJECTED_COLUMNS]
    kept = shard.rows.drop(index=bad.index).reset_index(drop=True)
    return LibraryShard(
        shard.index, kept, pd.concat([shard.rejected, rejected], ignore_index=True) if len(rejected) else shard.rejected
    )


def _concat_rejected(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=REJECTED_COLUMNS[1:])
    return frame.assign(kind="molecule")[REJECTED_COLUMNS]


Featurised = tuple[CompactMolecules, list[tuple[int, str]], list[str]]
"""`compact_molecules`'s answer: the kept molecules, (position, reason) of the refused, canonical SMILES."""


@dataclass
class FeatureJob:
    """A list submitted to a `FeaturePool`: its SMILES and the future of its featurisation."""

    smiles: list[str]
    future: Future[Featurised]


class FeaturePool:
    """Compact featurisation of library SMILES in a sandbox of ``workers`` processes (at least one), each
    molecule within ``budget`` (`data.sandbox`), the library rules included (`rules.candidate_refusal`).

    One background thread feeds the sandbox a submitted list at a time, so the caller scores the
    previous list meanwhile. The workers end with `close`, or with this process if it is killed.
    """

    def __init__(
        self, workers: int, max_atoms: int = MAX_DRUG_NODES, canonical: bool = False, budget: Budget | None = None
    ) -> None:
        self.workers = max(1, workers)
        self.max_atoms = max_atoms
        self.canonical = canonical
        self.sandbox = molecule_sandbox(self.workers, budget, warm=[(compact_molecule, "c1ccccc1O", max_atoms)])
        self._feeder = ThreadPoolExecutor(1, thread_name_prefix="drugrepo-featurise")

    def submit(self, smiles: list[str]) -> FeatureJob:
        """Start featurising ``smiles`` (after the lists submitted before); `result` waits for it."""
        return FeatureJob(
            smiles,
            self._feeder.submit(
                compact_molecules, smiles, self.max_atoms, self.canonical, library=True, sandbox=self.sandbox
            ),
        )

    def result(self, job: FeatureJob) -> Featurised:
        """A submitted list's compact molecules, (position, reason) of those refused, and the
        kept ones' canonical SMILES (with ``canonical``)."""
        return job.future.result()

    def close(self) -> None:
        """Stop the worker processes (a list being featurised stops after its current batches) and the thread."""
        self.sandbox.close()
        self._feeder.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> FeaturePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shard_digest(shard: LibraryShard) -> str:
    """A blake2b hash of a shard's rows as read (id, SMILES, file, line) and of the reader's refusals in it,
    recorded in its marker: a rerun keeps a finished shard only if it reads the same rows."""
    digest = hashlib.blake2b(digest_size=16)
    for table, columns in ((shard.rows, ("id", "smiles", "file", "line")), (shard.rejected, REJECTED_COLUMNS[1:])):
        for column in columns:
            values = table[column].astype(str).tolist()
            digest.update(np.fromiter(map(len, values), np.int64, len(values)).tobytes())
            digest.update("".join(values).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def library_change(
    library: str, before: Sequence[Sequence[str | None]], now: Sequence[Sequence[str | None]]
) -> str | None:
    """How the files of ``library`` differ between two `library_files` records, naming the first that
    changed (``lib/a.smi: size 1,200 → 900 bytes``), or None when none did."""
    old = {str(label): version for label, version in before}
    new = {str(label): version for label, version in now}
    changes = []
    for label in dict.fromkeys([*old, *new]):
        if label not in new:
            changes.append((label, "removed"))
        elif label not in old:
            changes.append((label, "added"))
        elif old[label] != new[label]:
            changes.append((label, _version_change(old[label], new[label])))
    if not changes:
        return None
    label, what = changes[0]
    name = label if label == library else f"{library.rstrip('/')}/{label}"
    more = f" (and {len(changes) - 1} more file{'s' if len(changes) > 2 else ''})" if len(changes) > 1 else ""
    return f"{name}: {what}{more}"


def _version_change(before: str | None, now: str | None) -> str:
    """A file version's change in words: its size (local files), else the two versions (S3 ETags)."""
    sizes = [re.fullmatch(r"(\d+):-?\d+", v or "") for v in (before, now)]
    if sizes[0] and sizes[1]:
        old, new = int(sizes[0][1]), int(sizes[1][1])
        return f"size {old:,} → {new:,} bytes" if old != new else "modified (same size, new modification time)"
    return f"version {before} → {now}"
