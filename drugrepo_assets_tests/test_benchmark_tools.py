"""The benchmark helpers benchmarks/make_library.py and benchmarks/proctree.py.

benchmarks/ is not a package, so both modules are loaded by path.
"""

from __future__ import annotations

import gzip
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from rdkit import Chem

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def make_library() -> ModuleType:
    return _load("make_library")


@pytest.fixture(scope="module")
def proctree() -> ModuleType:
    return _load("proctree")


def test_make_library_is_deterministic_and_distinct(make_library, tmp_path):
    first = make_library.make_library(200, tmp_path / "a.smi.gz")
    second = make_library.make_library(200, tmp_path / "b.smi.gz")
    assert first.read_bytes() == second.read_bytes()

    lines = gzip.decompress(first.read_bytes()).decode().splitlines()
    assert lines[0] == "smiles\tid"
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == 200 and all(len(row) == 2 for row in rows)
    ids = [row[1] for row in rows]
    assert len(set(ids)) == 200
    assert ids[0] == "LIB0000001" and ids[-1] == "LIB0000200"

    canonical = set()
    for smiles, _ in rows:
        mol = Chem.MolFromSmiles(smiles)
        assert mol is not None, smiles
        assert mol.GetNumAtoms() <= make_library.MAX_ATOMS
        canonical.add(Chem.MolToSmiles(mol))
    assert len(canonical) == 200

    # The sidecar makes a second call with the same key reuse the file untouched.
    mtime = first.stat().st_mtime_ns
    assert make_library.make_library(200, first) == first
    assert first.stat().st_mtime_ns == mtime


def test_run_measured_sees_a_grandchilds_memory(proctree, tmp_path):
    release = tmp_path / "release"
    need = 300 * 2**20
    # The child starts one grandchild that holds 300 MiB of touched memory until `release`
    # exists; the sampler's callback creates it once a sample has seen the memory.
    measured = proctree.run_measured(
        [sys.executable, "-c", proctree.HOLDING_CHILDREN, "1", "300", str(release)],
        on_sample=proctree._release_when(need, release),
        timeout=120,
    )
    assert not measured.timed_out, measured.stderr
    assert measured.returncode == 0, measured.stderr
    assert measured.peak_rss_bytes >= need
    assert measured.peak_processes >= 2


def test_peak_tree_rss_counts_children(proctree, tmp_path):
    release = tmp_path / "release"
    with proctree.PeakTreeRSS(interval=0.02) as m:
        child = subprocess.Popen([sys.executable, "-c", proctree.HOLDING_CHILDREN, "1", "100", str(release)])
        try:
            # Wait on the condition itself (bounded by a generous deadline), not on a fixed time.
            deadline = time.monotonic() + 60
            while m.peak_rss_bytes < m.start_rss_bytes + 100 * 2**20:
                assert time.monotonic() < deadline, "sampler never saw the child's memory"
                time.sleep(0.01)
        finally:
            release.touch()
            child.wait()
    assert m.peak_processes >= 3
    assert m.peak_rss_bytes >= m.start_rss_bytes + 100 * 2**20
