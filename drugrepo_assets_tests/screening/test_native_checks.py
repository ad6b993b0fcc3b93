"""The C screening kernel trusts nothing it is given: out-of-range inputs are refused with a ValueError
naming the molecule, by the Python wrapper and, when that is bypassed, by the kernel itself (never a
wrong score or a segfault); its first-use build cache is private, owned and hash-checked."""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from drugrepo_assets.screening import native
from drugrepo_assets.screening.kernels import variants

needs_compiler = pytest.mark.skipif(variants.compiler() is None, reason="no C compiler to build the kernel")

# Runs in a subprocess, so a segfault fails the test instead of killing pytest. Each case corrupts one
# value of a valid store, then scores it through the engine's kernel path, with the Python check on
# ("wrapper") or switched off ("kernel": the C function's own check is all that stands).
CORRUPT_AND_SCORE = r"""
import json, sys
from pathlib import Path
import torch
from drugrepo_assets.screening import engine as screen, native
from drugrepo_assets.ml.features.dataset import MoleculeStore
from drugrepo_assets.ml.features.protein import encode_proteins
from drugrepo_assets.ml.model.checkpoint import load_checkpoint

golden, cache, cases = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
lib = native.fusion_kernel() or native.load(native.build(cache))
screen.fusion_kernel = lambda: lib
engine = screen.ScreeningEngine(load_checkpoint(golden).model, native=True)
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
    (
        "kernel",
        "edge",
        7,
        "screening kernel refused molecule 1 of the store: edge 9 joins atoms 7 and 1, outside its 7 atoms",
    ),
    (
        "kernel",
        "edge",
        -1,
        "screening kernel refused molecule 1 of the store: edge 9 joins atoms -1 and 1, outside its 7 atoms",
    ),
    (
        "kernel",
        "edge",
        10**8,
        "screening kernel refused molecule 1 of the store: edge 9 joins atoms 100000000 and 1, outside its 7 atoms",
    ),
    (
        "kernel",
        "atoms",
        100,
        "screening kernel refused molecule 2 of the store: its atoms or edges lie outside the store",
    ),
]


@pytest.fixture(scope="module")
def refusals(golden_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    if native.fusion_kernel() is None and variants.compiler() is None:
        pytest.skip("no screening kernel here and no C compiler to build one")
    cases = [case[:3] for case in CASES]
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            CORRUPT_AND_SCORE,
            str(golden_dir / "model_state.pt"),
            str(tmp_path_factory.mktemp("kernel-cache")),
            json.dumps(cases),
        ],
        capture_output=True,
        text=True,
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
    [
        ({}, 0),
        ({"threads": 0}, 3),
        ({"gp_len": 1}, 3),
        ({"wp_len": 64}, 3),
        ({"qp_len": 1}, 3),
        ({"K": 48}, 1),
        ({"T": -1}, 3),
        ({"n": -1}, 3),
        ({"F": 0}, 3),
    ],
)
def test_the_kernel_refuses_sizes_that_do_not_fit_before_reading_anything(lib, change: dict, code: int) -> None:
    """Sizes only (no molecule, null buffers): the checks run before any buffer is read."""
    dims = (ctypes.c_int64 * 2)(32, 32)
    F, K, T = 2, 32, 1
    sizes = {
        "n": 0,
        "F": F,
        "gp_len": (F + 1) * 32 + 2 * 33 * 32 + 2 * 32,
        "wp_len": 33 * K,
        "K": K,
        "qp_len": K * K * T,
        "T": T,
        "threads": 1,
        **change,
    }
    bad = (ctypes.c_int64 * 2)(7, 7)
    rc = lib.drugban_screen(
        None,
        0,
        None,
        0,
        None,
        None,
        None,
        None,
        sizes["n"],
        sizes["F"],
        None,
        sizes["gp_len"],
        dims,
        1,
        None,
        sizes["wp_len"],
        sizes["K"],
        None,
        sizes["qp_len"],
        None,
        sizes["T"],
        None,
        None,
        sizes["threads"],
        bad,
    )
    assert rc == code
    assert list(bad) == [-1, -1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@needs_compiler
def test_the_first_use_cache_is_private_and_records_each_library_hash(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    built = native.build(root)
    assert _mode(root) == _mode(built.parent) == 0o700
    assert built.parent.parent == root and built.stat().st_uid == os.geteuid()
    record = built.with_name(built.name + ".sha256")
    assert record.read_text().strip() == hashlib.sha256(built.read_bytes()).hexdigest()
    assert native.build(root) == built  # found, not built again
    assert native.load(built).drugban_screen is not None


@needs_compiler
def test_a_cache_folder_from_before_is_made_owner_only(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir(mode=0o755)
    root.chmod(0o755)  # whatever the umask
    native.build(root)
    assert _mode(root) == 0o700


@needs_compiler
@pytest.mark.parametrize("tamper", ["changed", "truncated", "record"])
def test_a_tampered_cached_library_is_rebuilt_not_loaded(tmp_path: Path, tamper: str, caplog) -> None:
    built = native.build(tmp_path / "cache")
    good = built.read_bytes()
    record = built.with_name(built.name + ".sha256")
    if tamper == "changed":  # a library that still loads, with other bytes
        built.write_bytes(good + b"\0appended by someone else")
    elif tamper == "truncated":
        built.write_bytes(good[: len(good) // 2])
    else:
        record.write_text("0" * 64 + "\n")
    tampered = hashlib.sha256(built.read_bytes()).hexdigest()
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        again = native.build(tmp_path / "cache")
    assert again == built
    rebuilt = hashlib.sha256(built.read_bytes()).hexdigest()
    assert rebuilt == record.read_text().strip()
    assert rebuilt != tampered or tamper == "record"
    assert "SHA-256" in caplog.text and "rebuilding" in caplog.text
    assert native.load(again).drugban_screen is not None


@needs_compiler
@pytest.mark.parametrize("where", ["root", "build folder"])
def test_a_cache_others_can_write_is_refused_and_screening_falls_back_to_torch(tmp_path: Path, where: str) -> None:
    root = tmp_path / "cache"
    built = native.build(root)
    (root if where == "root" else built.parent).chmod(0o770)
    with pytest.raises(RuntimeError, match="writable by group or others"):
        native.build(root)
    lib, info = native.resolve(variants.X86_64_V4, "x86_64", tmp_path / "no-prebuilt", lambda: native.build(root))
    assert lib is None and info.kernel == "none"
    assert "writable by group or others" in info.reason


@needs_compiler
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give a file to another user")
@pytest.mark.parametrize("what", ["build folder", "library"])
def test_a_cache_owned_by_another_user_is_not_loaded(tmp_path: Path, what: str) -> None:
    root = tmp_path / "cache"
    built = native.build(root)
    os.chown(built.parent if what == "build folder" else built, 65534, 65534)
    if what == "build folder":
        with pytest.raises(RuntimeError, match="owned by uid 65534, not this user"):
            native.build(root)
    else:  # a file in our own private folder: replaced by a build of ours
        assert native.build(root) == built and built.stat().st_uid == os.geteuid()
