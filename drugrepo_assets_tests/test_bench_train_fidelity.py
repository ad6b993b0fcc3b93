"""benchmarks/bench_train_fidelity.py without the reference: its subsample, its summary and its imports.

benchmarks/ is not a package, so the module is loaded by path.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from drugrepo_assets.data.columns import read_pairs
from drugrepo_assets.data.validate import validate_pairs

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_fidelity.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_bench_train_fidelity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_module_level_imports_run_in_the_reference_venv():
    """The reference worker runs this file in a venv without drugrepo_assets: module level imports stdlib, numpy, pandas."""
    tree = ast.parse(SCRIPT.read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    assert top - set(sys.stdlib_module_names) - {"__future__"} == {"numpy", "pandas"}


def test_subsample_is_deterministic_and_valid(bench, tmp_path):
    sizes = {"train": 24, "val": 8, "test": 8}
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    assert bench.subsample(sizes, first) == sizes == bench.subsample(sizes, second)
    for split in bench.SPLITS:
        a, b = pd.read_csv(first / f"{split}.csv"), pd.read_csv(second / f"{split}.csv")
        pd.testing.assert_frame_equal(a, b)
        assert list(a.columns) == ["SMILES", "Protein", "Y"]  # what the reference's DTIDataset reads
        checked = validate_pairs(read_pairs(str(first / f"{split}.csv")))
        assert len(checked.rejected) == 0 and len(checked.valid) == sizes[split]


def test_summary_pairs_the_sides_by_seed(bench):
    runs = [
        {"side": side, "seed": seed, "test_auroc": auroc, "test_auprc": 0.5, "wall_s": 1.0, "cpu_s": 2.0}
        for seed, (ref, ours) in enumerate([(0.70, 0.72), (0.60, 0.66), (0.80, 0.80)])
        for side, auroc in (("reference", ref), ("project", ours))
    ]
    auroc = bench.summary(runs)["test_auroc"]
    assert auroc["reference"]["mean"] == pytest.approx(0.70)
    assert auroc["reference"]["sd"] == pytest.approx(0.10)
    assert auroc["project_minus_reference"]["mean"] == pytest.approx(0.08 / 3)
    assert auroc["project_minus_reference"]["sd"] == pytest.approx(0.0305505, abs=1e-6)
