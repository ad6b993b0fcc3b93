"""The tile plan: library shards × target blocks, each tile named by the content it scores.

A tile is one shard of molecules (`screening.library`) against one block of targets. Its name joins
the shard's content digest and the block's (the block's target ids and sequences), so a tile's files
are found again by any run that scores the same molecules against the same targets: a rerun skips
them, a failed tile is retried alone, and a library or target list that grows costs only the tiles
that are new. Memory is bounded along both axes: a tile holds ``shard_size`` molecules, a block
``block_size`` targets' ids, and the engine a chunk of their terms at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

SHARD_SIZE = 50_000
"""Molecules per library shard: the unit of featurisation and of resumption along the library axis."""

BLOCK_SIZE = 256
"""Targets per block: the unit of resumption along the target axis (a tile's logits: 4 bytes × shard × block)."""


@dataclass(frozen=True)
class TargetBlock:
    """Targets ``ids`` (cleaned ``sequences``) at positions ``start``… of the target list, named by their content."""

    index: int
    start: int
    name: str
    ids: tuple[str, ...]
    sequences: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)


def block_name(ids: Sequence[str], sequences: Sequence[str]) -> str:
    """A target block's content name: a digest of its ids and sequences, in order."""
    digest = hashlib.blake2b(digest_size=8)
    for ident, sequence in zip(ids, sequences):
        digest.update(f"{ident}\t{sequence}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def target_blocks(targets: pd.DataFrame, block_size: int = BLOCK_SIZE) -> list[TargetBlock]:
    """The targets (``id, sequence``, in list order) cut into blocks of ``block_size``."""
    ids = targets["id"].astype(str).tolist()
    sequences = targets["sequence"].astype(str).tolist()
    blocks = []
    for index, start in enumerate(range(0, len(ids), block_size)):
        chunk_ids, chunk_seqs = ids[start : start + block_size], sequences[start : start + block_size]
        blocks.append(TargetBlock(index, start, block_name(chunk_ids, chunk_seqs), tuple(chunk_ids), tuple(chunk_seqs)))
    return blocks


def tile_name(shard: str, block: str) -> str:
    """The name of the tile of shard ``shard`` × block ``block`` (both content names)."""
    return f"{shard}-{block}"
