"""The C screening kernel trusts nothing it is given: out-of-range inputs are refused with a ValueError
naming the molecule, by the Python wrapper and, when that is bypassed, by the kernel itself (never a
wrong score or a segfault); its first-use build cache is private, owned and hash-checked."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drugrepo_assets.ml import native
from drugrepo_assets.ml.kernels import variants

needs_compiler = pytest.mark.skipif(variants.compiler() is None, reason="no C compiler to build the kernel")

# Runs in a subprocess, so a segfault fails the test instead of killing pytest. Each case corrupts one
# value of a valid store, then scores it through the engine's kernel path, with the Python check on
# ("wrapper") or switched off ("kernel": the C function's own check is all that stands).
CORRUPT_AND_SCORE = r"""
import json, sys
from pathlib import Path
import torch
from drugrepo_assets.ml import native, screen
from drugrepo_assets.ml.dataset import MoleculeStore
from drugrepo_assets.ml.featurize import encode_proteins
from drugrepo_assets.ml.model import load_checkpoint

golden, cache, cases = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
lib = native.fusion_kernel() or native.load(native.build(cache))
screen.fusion_kernel = lambda: lib
engine = screen.ScreeningEngine(load_checkpoint(golden)[0], native=True)
codes = torch.from_numpy(encode_proteins(["MKVLAAGIVGLLLAAHPAQAENPGSTRYWDCE" * 4]))
check = getattr(native, "check_molecules", None)
results = []
for layer, field, value in cases:
    molecules = MoleculeStore.from_smiles(["CCO", "c1ccccc1O", "CC(=O)O"])
    if field == "edge":  # molecule 1's third edge, its source atom
        molecules.edge_index[0, int(molecules.edge_offsets[1]) + 2] = value
    else:  # the store claims more atoms than it holds
        molecules.node_offsets[-1] += value
    if check is not None:
        native.check_molecules = check if layer == "wrapper" else (lambda *args: None)
    try:
        logits = engine.score_matrix(molecules, codes)
        results.append({"scored": logits.tolist()})
    except Exception as exc:
        results.append({"error": type(exc).__name__, "message": str(exc)})
print(json.dumps(results))
"""

CASES = [
    # (layer, field, value, message): an index just outside molecule 1 (7 atoms) reads another
    # molecule's scratch rows (a wrong logit before), a huge one reads far outside the buffers (a segfault)
    ("wrapper", "edge", 7, "molecule 1 of the store: edge 9 joins atoms 7 and 1, outside its 7 atoms"),
    ("wrapper", "edge", -1, "molecule 1 of the store: edge 9 joins atoms -1 and 1, outside its 7 atoms"),
    ("wrapper", "edge", 10**8, "molecule 1 of the store: edge 9 joins atoms 100000000 and 1, outside its 7 atoms"),
    ("wrapper", "atoms", 100, "the molecule store's offsets do not span its 14 atoms"),
    ("kernel", "edge", 7, "screening kernel refused molecule 1 of the store: edge 9 joins atoms 7 and 1, outside its 7 atoms"),
    ("kernel", "edge", -1, "screening kernel refused molecule 1 of the store: edge 9 joins atoms -1 and 1, outside its 7 atoms"),
    ("kernel", "edge", 10**8, "screening kernel refused molecule 1 of the store: edge 9 joins atoms 100000000 and 1, outside its 7 atoms"),
    ("kernel", "atoms", 100, "screening kernel refused molecule 2 of the store: its atoms or edges lie outside the store"),
]


@pytest.fixture(scope="module")
def refusals(golden_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    if native.fusion_kernel() is None and variants.compiler() is None:
        pytest.skip("no screening kernel here and no C compiler to build one")
    cases = [case[:3] for case in CASES]
    run = subprocess.run(
        [sys.executable, "-c", CORRUPT_AND_SCORE, str(golden_dir / "model_state.pt"),
         str(tmp_path_factory.mktemp("kernel-cache")), json.dumps(cases)],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, f"exit {run.returncode} (-11: segfault): {run.stderr[-3000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_out_of_range_molecules_are_refused_naming_the_molecule(refusals: list[dict], case: int) -> None:
    message = CASES[case][3]
    assert refusals[case].get("error") == "ValueError", refusals[case]
    assert refusals[case]["message"].startswith(message)  # the wrapper's own words, or the kernel's


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory):
    found = native.fusion_kernel()
    if found is None and variants.compiler() is None:
        pytest.skip("no screening kernel here and no C compiler to build one")
    return found or native.load(native.build(tmp_path_factory.mktemp("kernel-cache")))


@pytest.mark.parametrize(
    ("change", "code"),
    [({}, 0), ({"threads": 0}, 3), ({"gp_len": 1}, 3), ({"wp_len": 64}, 3), ({"qp_len": 1}, 3), ({"K": 48}, 1),
     ({"T": -1}, 3), ({"n": -1}, 3), ({"F": 0}, 3)],
)
def test_the_kernel_refuses_sizes_that_do_not_fit_before_reading_anything(lib, change: dict, code: int) -> None:
    """Sizes only (no molecule, null buffers): the checks run before any buffer is read."""
    dims = (ctypes.c_int64 * 2)(32, 32)
    F, K, T = 2, 32, 1
    sizes = {"n": 0, "F": F, "gp_len": (F + 1) * 32 + 2 * 33 * 32 + 2 * 32, "wp_len": 33 * K, "K": K,
             "qp_len": K * K * T, "T": T, "threads": 1, **change}
    bad = (ctypes.c_int64 * 2)(7, 7)
    rc = lib.drugban_screen(None, 0, None, 0, None, None, None, None, sizes["n"], sizes["F"], None, sizes["gp_len"], dims, 1,
                            None, sizes["wp_len"], sizes["K"], None, sizes["qp_len"], None, sizes["T"], None, None,
                            sizes["threads"], bad)
    assert rc == code
    assert list(bad) == [-1, -1]
