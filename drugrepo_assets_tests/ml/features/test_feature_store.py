"""Feature shards are checked when read: a SHA-256 of their arrays (stored in each shard) and their
shapes and ranges, so a damaged or wrong shard is refused naming its file, never scored; featurising
the same items again repairs the store."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drugrepo_assets.data.rules import MAX_DRUG_ATOMS, PROTEIN_ALPHABET
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.data.validate import drug_id
from drugrepo_assets.ml.features.feature_store import CorruptShardError, FeatureStore, checksum
from drugrepo_assets.ml.features.featurize import CompactMolecules, compact_molecules

# every shard read through the store's public loaders, drugs and proteins
LOADERS = {
    "drugs": lambda store, ids, shards: store.drugs.load_compact(ids, shards),
    "proteins": lambda store, ids, shards: store.proteins.load(ids, shards),
}


@pytest.fixture(scope="module")
def items() -> dict[str, tuple[list[str], list[str]]]:
    rows = pd.read_csv(bundled_root() / "human" / "random" / "val.csv")
    smiles = rows["SMILES"].drop_duplicates().head(12).tolist()
    proteins = rows["Protein"].drop_duplicates().head(3).tolist()
    return {"drugs": ([drug_id(s) for s in smiles], smiles), "proteins": ([f"T{i}" for i in range(3)], proteins)}


def _stored(tmp_path: Path, items, kind: str) -> tuple[FeatureStore, list[str], list[str], Path]:
    store = FeatureStore(tmp_path)
    ids, sources = items[kind]
    result = getattr(store, kind).ensure(ids, sources)
    return store, ids, [result.shard_of[i] for i in ids], getattr(store, kind).dir / f"{result.new_shard}.npz"


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _rewrite(path: Path, arrays: dict[str, np.ndarray], sign: bool) -> None:
    """Write a shard's arrays as given, its stored checksum kept; with ``sign``, a checksum that matches them
    instead (a writer's bug, not damage)."""
    if sign:
        arrays = {k: v for k, v in arrays.items() if k != "sha256"}
        arrays["sha256"] = np.asarray(checksum(arrays))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("kind", ["drugs", "proteins"])
def test_a_stored_shard_carries_the_checksum_of_its_arrays(tmp_path: Path, items, kind: str) -> None:
    store, ids, shards, path = _stored(tmp_path, items, kind)
    arrays = _arrays(path)
    assert str(arrays["sha256"]) == checksum({k: v for k, v in arrays.items() if k != "sha256"})
    assert len(LOADERS[kind](store, ids, shards)) == len(ids)
    assert not list(path.parent.glob(".*.tmp"))


@pytest.mark.parametrize("kind", ["drugs", "proteins"])
def test_a_changed_array_is_refused_naming_the_shard(tmp_path: Path, items, kind: str) -> None:
    _store, ids, shards, path = _stored(tmp_path, items, kind)
    arrays = _arrays(path)
    codes = arrays["codes"].copy()
    codes.flat[5] = 1 if codes.flat[5] != 1 else 2  # still in range: only the checksum tells
    _rewrite(path, {**arrays, "codes": codes}, sign=False)
    with pytest.raises(
        CorruptShardError, match=f"{re.escape(str(path))}: its arrays' SHA-256 is not the one stored with them"
    ) as caught:
        LOADERS[kind](FeatureStore(tmp_path), ids, shards)
    assert caught.value.path == str(path)


@pytest.mark.parametrize("kind", ["drugs", "proteins"])
@pytest.mark.parametrize("cut", [0, 100, -50])
def test_a_truncated_shard_is_refused_naming_the_shard(tmp_path: Path, items, kind: str, cut: int) -> None:
    _store, ids, shards, path = _stored(tmp_path, items, kind)
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(CorruptShardError, match=f"{re.escape(str(path))}: cannot be read"):
        LOADERS[kind](FeatureStore(tmp_path), ids, shards)


def _molecules(arrays: dict[str, np.ndarray]) -> CompactMolecules:
    return CompactMolecules(arrays["codes"], arrays["bonds"], arrays["num_atoms"], arrays["num_bonds"])


def _bad_bond(arrays):  # molecule 1's first bond ends on an atom of molecule 2
    bonds = arrays["bonds"].copy()
    bonds[int(arrays["num_bonds"][0]), 1] = arrays["num_atoms"][1]
    return {**arrays, "bonds": bonds}


def _negative_bond(arrays):
    bonds = arrays["bonds"].copy()
    bonds[0, 0] = -1
    return {**arrays, "bonds": bonds}


def _atoms_not_summing(arrays):
    num_atoms = arrays["num_atoms"].copy()
    num_atoms[0] += 1
    return {**arrays, "num_atoms": num_atoms}


def _too_many_atoms(arrays):
    big = compact_molecules(["C" * (MAX_DRUG_ATOMS + 1)], max_atoms=MAX_DRUG_ATOMS + 1)[0]
    rows = {k: np.concatenate([arrays[k], getattr(big, k)]) for k in ("codes", "bonds", "num_atoms", "num_bonds")}
    return {**arrays, **rows, "ids": np.concatenate([arrays["ids"], ["big"]])}


def _code_out_of_range(arrays):
    codes = arrays["codes"].copy()
    codes[3, 0] = -3  # a one-hot column index: negative would wrap to another column
    return {**arrays, "codes": codes}


def _ids_not_matching(arrays):
    return {**arrays, "ids": arrays["ids"][:-1]}


def _protein_code_out_of_range(arrays):
    codes = arrays["codes"].copy()
    codes[1, 10] = len(PROTEIN_ALPHABET) + 1
    return {**arrays, "codes": codes}


def _protein_too_short(arrays):
    return {**arrays, "codes": arrays["codes"][:, :-1]}


@pytest.mark.parametrize(
    ("kind", "damage", "reason"),
    [
        ("drugs", _bad_bond, "molecule 1 has a bond to atom {n1}, outside its {n1} atoms"),
        ("drugs", _negative_bond, "molecule 0 has a bond to atom -1, outside its"),
        ("drugs", _atoms_not_summing, "atom counts sum to"),
        ("drugs", _too_many_atoms, f"molecule 12 has 291 atoms, more than {MAX_DRUG_ATOMS}"),
        ("drugs", _code_out_of_range, "atom 3 has a feature column -3 outside 0..74"),
        ("drugs", _ids_not_matching, "11 ids for 12 molecules"),
        (
            "proteins",
            _protein_code_out_of_range,
            f"protein 1 has code {len(PROTEIN_ALPHABET) + 1}, outside 0..{len(PROTEIN_ALPHABET)}",
        ),
        ("proteins", _protein_too_short, "codes of shape (3, 1199), not (3, 1200)"),
    ],
    ids=lambda v: getattr(v, "__name__", None) if callable(v) else None,
)
def test_a_shard_of_wrong_shapes_or_ranges_is_refused_even_with_a_valid_checksum(
    tmp_path: Path, items, kind: str, damage, reason: str
) -> None:
    _store, ids, shards, path = _stored(tmp_path, items, kind)
    arrays = _arrays(path)
    reason = reason.format(n1=int(arrays["num_atoms"][1])) if kind == "drugs" else reason
    _rewrite(path, damage(arrays), sign=True)
    with pytest.raises(CorruptShardError, match=rf"{re.escape(str(path))}: .*{re.escape(reason)}"):
        LOADERS[kind](FeatureStore(tmp_path), ids, shards)


def test_molecules_that_would_make_a_wrong_shard_are_not_written(
    tmp_path: Path, items, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, smiles = items["drugs"]
    molecules = compact_molecules(smiles)[0]
    bonds = molecules.bonds.copy()
    bonds[0, 0] = 200
    store = FeatureStore(tmp_path)
    wrong = store.drugs._arrays(CompactMolecules(molecules.codes, bonds, molecules.num_atoms, molecules.num_bonds))
    monkeypatch.setattr(store.drugs, "_pack", lambda sources: wrong)  # a featuriser that went wrong
    with pytest.raises(ValueError, match="molecule 0 has a bond to atom 200"):
        store.drugs.ensure(ids, smiles)
    assert not store.drugs.dir.exists() or not list(store.drugs.dir.iterdir())


@pytest.mark.parametrize("kind", ["drugs", "proteins"])
@pytest.mark.parametrize("damage", ["changed", "truncated"])
def test_featurising_the_same_items_again_repairs_a_damaged_shard(
    tmp_path: Path, items, kind: str, damage: str, caplog
) -> None:
    store, ids, shards, path = _stored(tmp_path, items, kind)
    expected = LOADERS[kind](store, ids, shards)
    good = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:
        arrays = _arrays(path)
        codes = arrays["codes"].copy()
        codes.flat[0] = 1 if codes.flat[0] != 1 else 2
        _rewrite(path, {**arrays, "codes": codes}, sign=False)
    with caplog.at_level(logging.WARNING):
        again = getattr(FeatureStore(tmp_path), kind).ensure(*items[kind])
    assert (again.new, again.reused) == (len(ids), 0)  # featurised anew, not taken from the damaged shard
    assert again.new_shard == path.name.removesuffix(".npz")  # the same items: the same shard, rewritten whole
    assert str(path) in caplog.text
    repaired = LOADERS[kind](FeatureStore(tmp_path), ids, shards)
    if kind == "drugs":
        for field in ("codes", "bonds", "num_atoms", "num_bonds"):
            np.testing.assert_array_equal(getattr(repaired, field), getattr(expected, field))
    else:
        assert repaired.equal(expected)
    assert (getattr(FeatureStore(tmp_path), kind).ensure(*items[kind]).reused) == len(ids)
