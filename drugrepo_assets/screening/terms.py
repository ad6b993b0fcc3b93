"""Target terms stored once per checkpoint: a protein is encoded once, then every screen, every Dagster
tile and every API replica reads its terms.

A target's terms are what the screening engine needs of it (`screening.engine.TargetTerms`): its Gram matrix
Gq [K, K] (symmetric) and sq [K]. They depend on the checkpoint and the sequence only, so they are
content-addressed: ``<root>/<checkpoint_id>/<key[:2]>/<key>.npy`` with ``key`` = `term_key` of the
sequence. A file holds sq then Gq's upper triangle, float32 (K + K(K+1)/2 floats: 1.18 MB at K = 768,
half of the full matrix), so the terms read back are bit for bit those computed
(`screening.engine.symmetric`). The root is a local folder or an ``s3://`` prefix; files are written
atomically, so concurrent writers of one target (two pods) leave one whole file.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from drugrepo_assets.files import StoragePath, write_bytes_atomic
from drugrepo_assets.ml.features.protein import encode_proteins
from drugrepo_assets.screening.engine import ScreeningEngine, TargetTerms

TARGET_TERMS_ENV = "DRUGREPO_TARGET_TERMS"
"""Where screens and the API keep target terms when no location is given (a folder or ``s3://`` prefix)."""


def term_key(sequence: str) -> str:
    """The content id of a (cleaned) target sequence: its terms' file name under a checkpoint."""
    return hashlib.sha256(sequence.encode()).hexdigest()[:32]


class TermsError(ValueError):
    """A stored terms file that is not what its checkpoint's model makes: one line naming the file."""


def _triangle(width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(width)


def terms_bytes(width: int) -> int:
    """Bytes of float32 values in one target's terms file for a model of term width K: sq and Gq's upper triangle."""
    return 4 * (width + width * (width + 1) // 2)


@dataclass
class TermsUse:
    """How a block's terms were obtained: targets read from the store, and computed now (and stored)."""

    read: int = 0
    computed: int = 0

    def add(self, other: TermsUse) -> None:
        """Count another block's use into this one."""
        self.read += other.read
        self.computed += other.computed


class TargetTermStore:
    """Target terms of one checkpoint under ``root`` (a `Path` or `UPath`), read and written by `term_key`."""

    def __init__(self, root: StoragePath, checkpoint_id: str) -> None:
        self.root = root
        self.checkpoint_id = checkpoint_id
        self.folder = root / checkpoint_id

    def path(self, key: str) -> Any:
        """Where target ``key``'s terms live."""
        return self.folder / key[:2] / f"{key}.npy"

    def has(self, key: str) -> bool:
        """Whether target ``key``'s terms are stored."""
        return bool(self.path(key).exists())

    def save(self, key: str, gq: torch.Tensor, sq: torch.Tensor) -> None:
        """Store one target's terms (Gq must be symmetric, as `ScreeningEngine.target_terms` makes it)."""
        width = len(sq)
        g = gq.detach().float().cpu().numpy()
        flat = np.concatenate([sq.detach().float().cpu().numpy(), g[_triangle(width)]])
        buffer = io.BytesIO()
        np.save(buffer, flat, allow_pickle=False)
        write_bytes_atomic(self.path(key), buffer.getvalue())

    def load(self, keys: Sequence[str], width: int) -> TargetTerms:
        """The stored terms of targets ``keys`` (each file checked against the model's width K)."""
        rows, cols = _triangle(width)
        size = width + len(rows)
        gq = np.zeros((len(keys), width, width), dtype=np.float32)
        sq = np.empty((len(keys), width), dtype=np.float32)
        for i, key in enumerate(keys):
            path = self.path(key)
            with path.open("rb") as handle:
                try:
                    flat = np.load(handle, allow_pickle=False)
                except ValueError as exc:
                    raise TermsError(f"{path}: not a target-terms file ({exc})") from None
            if flat.dtype != np.float32 or flat.shape != (size,):
                raise TermsError(
                    f"{path}: holds {flat.dtype} {flat.shape}, not the {size} float32 values of a width-{width} model"
                )
            sq[i] = flat[:width]
            gq[i][rows, cols] = flat[width:]
            gq[i][cols, rows] = flat[width:]
        return TargetTerms(gq=torch.from_numpy(gq), sq=torch.from_numpy(sq))


def encode_each(engine: ScreeningEngine, sequences: Sequence[str]) -> TargetTerms:
    """The terms of each target encoded alone, at the model's protein length: the protein CNN's bits depend
    on the batch it runs in, and a target's stored terms must not depend on which targets came with it."""
    length, width = engine.model.config.max_protein_length, engine.term_width  # as the model was trained
    gq = torch.empty((len(sequences), width, width), device=engine.device)
    sq = torch.empty((len(sequences), width), device=engine.device)
    for i, sequence in enumerate(sequences):
        one = engine.target_terms(torch.from_numpy(encode_proteins([sequence], length)))
        gq[i], sq[i] = one.gq[0], one.sq[0]
    return TargetTerms(gq=gq, sq=sq)


def block_terms(
    engine: ScreeningEngine, sequences: Sequence[str], store: TargetTermStore | None = None
) -> tuple[TargetTerms, TermsUse]:
    """The terms of targets ``sequences`` (cleaned; at most ``engine.target_chunk`` of them): read from
    ``store`` where stored, the others encoded by the engine now and stored for next time."""
    width = engine.term_width
    if store is None:
        return encode_each(engine, sequences), TermsUse(computed=len(sequences))
    keys = [term_key(s) for s in sequences]
    missing = [i for i, k in enumerate(keys) if not store.has(k)]
    if missing:
        computed = encode_each(engine, [sequences[i] for i in missing])
        for j, i in enumerate(missing):
            store.save(keys[i], computed.gq[j], computed.sq[j])
    if len(missing) == len(keys):
        return computed, TermsUse(computed=len(missing))
    terms = store.load(keys, width)
    return TargetTerms(gq=terms.gq.to(engine.device), sq=terms.sq.to(engine.device)), TermsUse(
        read=len(keys) - len(missing), computed=len(missing)
    )
