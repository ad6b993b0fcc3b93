"""benchmarks/gpu_check.py in its smoke mode: prepared here, then run where RDKit cannot be imported, so that the
GPU check cannot rot. benchmarks/ is not a package, so the script runs as a program."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drugrepo_assets_tests.conftest import GOLDEN_DIR
from drugrepo_assets_tests.ml.features.test_exported import NO_RDKIT

pytestmark = pytest.mark.slow(40)

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    return []


@pytest.mark.scale
def test_gpu_check_smoke_runs_without_rdkit_and_reports_parity(tmp_path: Path, golden_dir: Path) -> None:
    assert golden_dir == GOLDEN_DIR  # the script reads the same golden folder
    inputs = tmp_path / "inputs"
    prepared = subprocess.run(
        [sys.executable, str(SCRIPT), str(inputs), "--prepare", "--smoke"], capture_output=True, text=True, timeout=1200
    )
    assert prepared.returncode == 0, prepared.stderr
    (tmp_path / "shim").mkdir()
    (tmp_path / "shim" / "sitecustomize.py").write_text(NO_RDKIT)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shim")}
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(inputs), "--smoke", "--json", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    parity = report["parity"]
    assert parity["pairs"] == 64 and parity["device"] == "cpu"
    assert parity["passed"] is True, parity
    assert parity["max_abs_cpu_vs_reference"] <= parity["tolerance_cpu_vs_reference"]
    training = report["training"]
    assert training["epochs_run"] == 1 and 0.0 <= training["test_auroc"] <= 1.0
    assert training["paper_test_auroc"] == 0.982
    assert {"8", "64"} <= set(report["screening"])
    assert all(report["screening"][k]["finite"] for k in ("8", "64"))
    numbers = _numbers(report)
    assert numbers and all(math.isfinite(n) for n in numbers)
    assert "golden parity" in done.stdout and "screening, 64 targets" in done.stdout
