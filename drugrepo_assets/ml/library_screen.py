"""A library of any size screened in bounded memory: shards featurised on every core, scored, written.

The library arrives as a stream of row chunks (`data.library.iter_library`); it is cut into
shards of ``shard_size`` molecules in read order. While the engine scores shard i, a background
thread has sandbox workers featurise shard i + 1 into compact codes (`FeaturePool`: RDKit and numpy
only in the workers, each molecule within its CPU and memory budget, `data.sandbox`). Each shard's pairs, its top-K and its refused rows are written as files of the score
data set (`ml.scores`), and a small JSON marks it done with a hash of the rows it read, so a rerun on
the same folder skips finished shards, and refuses to keep one whose rows have changed since
(`LibraryChanged`: stale and new shards are never merged). Memory holds two shards of strings
and compact features and the targets' terms, whatever the library's size.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch

from drugrepo_assets.data.sandbox import Budget, molecule_sandbox
from drugrepo_assets.data.sandbox import default_workers as default_workers  # where the CLI and assets find it
from drugrepo_assets.files import is_local, write_bytes_atomic
from drugrepo_assets.ml.featurize import MAX_DRUG_NODES, CompactMolecules, compact_molecule, compact_molecules
from drugrepo_assets.ml.scores import (
    RANKED,
    SCORES,
    TOP,
    ShardScores,
    part_name,
    shard_drug_ids,
    target_logits,
    write_shard,
)
from drugrepo_assets.ml.screen import ScreeningEngine

REJECTED_COLUMNS = ["kind", "file", "line", "id", "value", "reason"]
SHARDS, REJECTED, MANIFEST = "shards", "rejected", "manifest.json"


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


@dataclass
class ShardReport:
    """What one finished shard holds: molecules scored, rows refused, its seconds of work, and the
    `shard_digest` of the rows it read (empty in a marker written before digests were kept)."""

    index: int
    molecules: int
    rejected: int
    featurise_wait_s: float
    score_s: float
    digest: str = ""


@dataclass
class ScreenRun:
    """A finished library screen: its shards and totals (``skipped``: shards found done and kept)."""

    target_ids: list[str]
    shards: list[ShardReport] = field(default_factory=list)
    skipped: int = 0

    @property
    def molecules(self) -> int:
        """Molecules scored, over every shard."""
        return sum(s.molecules for s in self.shards)

    @property
    def rejected(self) -> int:
        """Library rows refused, over every shard."""
        return sum(s.rejected for s in self.shards)

    @property
    def pairs(self) -> int:
        """Pairs scored."""
        return self.molecules * len(self.target_ids)


LIBRARY_FILES = "library_files"
"""The manifest's record of the library's files: ``[label, version]`` each (`data.library.library_files`:
size and modification time, or the S3 ETag), so a rerun on an edited library is refused."""


class LibraryChanged(ValueError):
    """The library is not the one a screen folder's finished shards were read from: one line naming the file."""


def check_manifest(root: Any, settings: dict[str, Any]) -> None:
    """Record what a screen folder is for; a folder holding another screen's shards is refused, and so
    is the same screen of a library whose files changed since (`LibraryChanged`)."""
    path = root / MANIFEST
    if path.exists():
        found = json.loads(path.read_text())
        if found != settings:
            changed = sorted(k for k in settings.keys() | found.keys() if found.get(k) != settings.get(k))
            if changed == [LIBRARY_FILES]:
                what = library_change(str(settings["library"]), found[LIBRARY_FILES], settings[LIBRARY_FILES])
                raise LibraryChanged(f"{what} since the screen in {root} began")
            raise ValueError(f"{path}: holds a screen with other settings ({', '.join(changed)}); use another folder")
        return
    write_bytes_atomic(path, json.dumps(settings, indent=2, sort_keys=True).encode())


def library_change(
    library: str, before: Sequence[Sequence[str | None]], now: Sequence[Sequence[str | None]]
) -> str | None:
    """How the files of ``library`` differ between two `LIBRARY_FILES` records, naming the first that
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


def _kept_shard(marker: Any, shard: LibraryShard, digest: str) -> ShardReport:
    """A shard found done, if its marker's digest is that of the rows read now; else `LibraryChanged`."""
    kept = ShardReport(**json.loads(marker.read_text()))
    if kept.digest != digest:
        first = shard.rows if len(shard.rows) else shard.rejected
        where = f"{first['file'].iat[0]} line {first['line'].iat[0]}" if len(first) else f"shard {shard.index}"
        raise LibraryChanged(
            f"{where}: the library's rows differ from those of shard {shard.index} scored before "
            f"(it changed since the screen in {marker.parent.parent} began)"
        )
    return kept


def discard_screen(root: Any, outputs: Iterable[str] = ()) -> None:
    """Remove a screen's files from ``root`` (its manifest, shard markers, scores, refused rows, and the
    caller's ``outputs``) so that it starts over; anything else in the folder is left alone."""
    for name in (MANIFEST, SHARDS, REJECTED, SCORES, TOP, RANKED, *outputs):
        path = root / name
        if not is_local(path):
            if path.exists():
                path.fs.rm(path.path, recursive=True)
            continue
        local = Path(str(path))
        if local.is_dir() and not local.is_symlink():
            shutil.rmtree(local)
        else:
            local.unlink(missing_ok=True)


def _featurised_ahead(
    shards: Iterable[LibraryShard], pool: FeaturePool, done: Callable[[int], bool]
) -> Iterator[tuple[LibraryShard, FeatureJob | None]]:
    """Each shard with its featurisation job (None: found done), the next shard's job started before this one is yielded."""
    queue: deque[tuple[LibraryShard, FeatureJob | None]] = deque()
    for shard in shards:
        queue.append((shard, None if done(shard.index) else pool.submit(shard.rows["smiles"].tolist())))
        if len(queue) > 1:
            yield queue.popleft()
    yield from queue


def screen_library(
    engine: ScreeningEngine,
    chunks: Iterable[Any],
    target_ids: Sequence[str],
    target_codes: torch.Tensor,
    root: Any,
    *,
    shard_size: int = 50_000,
    top: int | None = 100,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> ScreenRun:
    """Score every molecule of the stream ``chunks`` against the targets into the data set at ``root``.

    Shards already marked done under ``root`` (an interrupted run) are kept, not scored again, when they
    read the same rows now (`shard_digest`); else `LibraryChanged`, before anything is written.
    ``progress`` is called with each shard's pairs, scored now or kept, so a bar's ETA holds on resume.
    """
    run = ScreenRun(target_ids=list(target_ids))
    terms = (
        [engine.target_terms(target_codes[s]) for s in engine.target_chunks(target_codes)]
        if len(target_codes) <= engine.target_chunk
        else None
    )

    def done(index: int) -> bool:
        return (root / SHARDS / f"{index:05d}.json").exists()

    with FeaturePool(workers) as pool:
        for shard, job in _featurised_ahead(iter_shards(chunks, shard_size), pool, done):
            marker = root / SHARDS / f"{shard.index:05d}.json"
            digest = shard_digest(shard)
            if job is None:
                kept = _kept_shard(marker, shard, digest)
                run.shards.append(kept)
                run.skipped += 1
                if progress is not None:
                    progress(kept.molecules * len(target_ids))
                continue
            start = time.perf_counter()
            molecules, refused, _ = pool.result(job)
            waited = time.perf_counter() - start
            shard = refuse(shard, refused)
            start = time.perf_counter()
            logits = engine.score_compact(molecules, target_codes, terms)
            scored = time.perf_counter() - start
            kept = shard.rows
            write_shard(
                root,
                part_name(shard.index),
                ShardScores(kept["id"].to_numpy(object), kept["smiles"].to_numpy(object), logits, target_ids),
                top,
            )
            _write_rejected(root / REJECTED / f"{part_name(shard.index)}.parquet", shard.rejected)
            report = ShardReport(shard.index, len(kept), len(shard.rejected), waited, scored, digest)
            write_bytes_atomic(marker, json.dumps(asdict(report)).encode())
            run.shards.append(report)
            if progress is not None:
                progress(len(kept) * len(target_ids))
    return run


def _write_rejected(path: Any, rejected: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    rejected.astype({"file": str, "id": str, "value": str, "reason": str}).to_parquet(buffer, index=False)
    write_bytes_atomic(path, buffer.getvalue())


def rejected_rows(root: Any, shards: Sequence[str]) -> Iterator[pd.DataFrame]:
    """The refused rows of each shard, in shard order."""
    for name in shards:
        with (root / REJECTED / f"{name}.parquet").open("rb") as handle:
            yield pd.read_parquet(handle)


def known_actives(root: Any, shards: Sequence[str], target_ids: Sequence[str], known: pd.DataFrame) -> pd.DataFrame:
    """Every scored pair of the targets that have known actives: ``target_id, logit, active``.

    ``known`` lists active pairs by ``target_id`` and ``drug_id`` (the library's ids). One
    target at a time, 5 bytes a pair: its logits and whether each molecule is a known active.
    """
    frames = []
    for t, target in enumerate(target_ids):
        actives = known.loc[known["target_id"] == target, "drug_id"].astype(str).unique()
        if not len(actives):
            continue
        logits = target_logits(root, shards, t)
        flags = []
        for name, part in zip(shards, logits):
            drugs = shard_drug_ids(root, name, t, len(part))
            flags.append(pc.is_in(drugs, value_set=pa.array(actives)).to_numpy(zero_copy_only=False))
        frames.append(
            pd.DataFrame({"target_id": target, "logit": np.concatenate(logits), "active": np.concatenate(flags)})
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["target_id", "logit", "active"])
