"""The package build prebuilds the screening kernel in portable ISA variants; an installed copy without a
compiler screens with the best one the CPU runs, giving the torch path's numbers.

The package is built as the Dockerfiles build it: their build context (pyproject.toml, setup.py,
README.md, drugrepo_assets/) copied out and installed with pip, here with --no-build-isolation (the
venv's setuptools, no network) and --target a temporary folder.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.features.dataset import MoleculeStore
from drugrepo_assets.ml.features.protein import encode_proteins
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.screening import engine as screen_module
from drugrepo_assets.screening import native
from drugrepo_assets.screening.engine import ScreeningEngine
from drugrepo_assets.screening.kernels import variants

REPO = Path(__file__).resolve().parents[2]
MACHINE = platform.machine()
V2, V3, V4 = variants.X86_64_V2, variants.X86_64_V3, variants.X86_64_V4
needs_compiler = pytest.mark.skipif(variants.compiler() is None, reason="no C compiler to build the package's kernels")


def _context(dest: Path, ignore=("__pycache__", "*.pyc", "*.so")) -> Path:
    """The Dockerfiles' build context: what they COPY before `pip install .`."""
    dest.mkdir(parents=True)
    for name in ["pyproject.toml", "setup.py", "README.md"]:
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "drugrepo_assets", dest / "drugrepo_assets", ignore=shutil.ignore_patterns(*ignore))
    return dest


def _bare_env(root: Path) -> dict[str, str]:
    """No compiler on PATH (only a `python`, this venv's), an empty HOME (no first-use build in its cache)."""
    bin_dir, home = root / "bin", root / "home"
    bin_dir.mkdir(parents=True)
    home.mkdir()
    # a script, not a symlink: a symlinked interpreter outside the venv does not find the venv's packages
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k in {"LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT"}}
    env.update(PATH=str(bin_dir), HOME=str(home), PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package as `pip install .` puts it (--target: a folder for PYTHONPATH)."""
    root = tmp_path_factory.mktemp("build")
    src, site = _context(root / "src"), root / "site"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "-v",
            "--target",
            str(site),
            str(src),
        ],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return site


def test_the_variants_a_cpu_runs_are_chosen_by_its_flags() -> None:
    names = lambda flags, machine="x86_64": [v.name for v in variants.supported(flags, machine)]  # noqa: E731
    assert names(V4 | {"avx512ifma", "sha_ni"}) == ["x86-64-v4"]
    assert names(V4 - {"avx512vl"}) == []  # AVX-512F alone is not v4
    assert names(V3) == names(V2) == names(set()) == []  # without AVX-512 the torch path is faster
    assert names(V4, "AMD64") == ["x86-64-v4"]
    assert names(V4, "aarch64") == []
    assert variants.for_machine("aarch64") == []
    assert [v.name for v in variants.for_machine("x86_64")] == ["x86-64-v4"]


def test_cpu_flags_are_read_from_proc_cpuinfo() -> None:
    flags = native.cpu_flags()
    if Path("/proc/cpuinfo").exists() and MACHINE == "x86_64":
        assert {"sse2", "fpu"} <= flags


@needs_compiler
def test_the_build_ships_every_variant_and_the_source(installed: Path) -> None:
    kernels = installed / "drugrepo_assets" / "screening" / "kernels"
    assert {p.name for p in kernels.glob("*.so")} == {variants.filename(v) for v in variants.for_machine(MACHINE)}
    assert (kernels / variants.SOURCE_NAME).read_bytes() == native.SOURCE.read_bytes()


@needs_compiler
@pytest.mark.parametrize("variant", variants.for_machine(MACHINE), ids=lambda v: v.name)
def test_each_prebuilt_variant_screens_like_torch(installed: Path, golden_dir: Path, monkeypatch, variant) -> None:
    """Every variant this CPU runs, loaded from the installed package, against the torch path on the golden model."""
    if variant not in variants.supported(native.cpu_flags(), MACHINE):
        pytest.skip(f"this CPU does not run {variant.name}")
    lib, why = native.load_prebuilt(variant, installed / "drugrepo_assets" / "screening" / "kernels")
    assert lib is not None, why
    model = load_checkpoint(str(golden_dir / "model_state.pt")).model
    molecules, codes = _library()
    expected = ScreeningEngine(model, native=False, drug_chunk=5).score_matrix(molecules, codes)
    monkeypatch.setattr(screen_module, "fusion_kernel", lambda: lib)
    engine = ScreeningEngine(model, drug_chunk=5)
    assert engine.native
    np.testing.assert_allclose(engine.score_matrix(molecules, codes), expected, atol=1e-5, rtol=0)


def _library() -> tuple[MoleculeStore, torch.Tensor]:
    rows = pd.read_csv(bundled_root() / "bindingdb" / "sample" / "train.csv")
    rng = np.random.default_rng(11)
    smiles = ["C", *rng.choice(rows["SMILES"].unique(), 10, replace=False), max(rows["SMILES"].unique(), key=len)]
    proteins = list(rng.choice(rows["Protein"].unique(), 3, replace=False))
    return MoleculeStore.from_smiles(smiles), torch.from_numpy(encode_proteins(proteins))


SCREEN_WITHOUT_A_COMPILER = """
import dataclasses, json, os, shutil, sys
import numpy as np
import drugrepo_assets
from drugrepo_assets.screening import native
from drugrepo_assets.screening.kernels import variants
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.screening.engine import ScreeningEngine
sys.path.insert(0, sys.argv[2])
from test_native_build import _library

model = load_checkpoint(sys.argv[1]).model
molecules, codes = _library()
engine = ScreeningEngine(model, drug_chunk=5)
fast = engine.score_matrix(molecules, codes)
slow = ScreeningEngine(model, native=False, drug_chunk=5).score_matrix(molecules, codes)
print(json.dumps({
    "package": drugrepo_assets.__file__,
    "compilers": [native._compiler(), variants.compiler(), shutil.which("cc"), shutil.which("gcc")],
    "native": engine.native,
    "info": dataclasses.asdict(native.kernel_info()),
    "max_diff": float(np.abs(fast - slow).max()),
    "spread": float(np.ptp(slow)),
    "home": sorted(str(p) for p in __import__("pathlib").Path.home().rglob("*")),
}))
"""


@needs_compiler
def test_an_installed_copy_without_a_compiler_screens_with_the_prebuilt_kernel(
    installed: Path, golden_dir: Path, tmp_path: Path
) -> None:
    env = _bare_env(tmp_path)
    env["PYTHONPATH"] = str(installed)
    run = subprocess.run(
        [
            str(tmp_path / "bin" / "python"),
            "-c",
            SCREEN_WITHOUT_A_COMPILER,
            str(golden_dir / "model_state.pt"),
            str(Path(__file__).parent),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(out["package"]).is_relative_to(installed), out["package"]  # not the editable checkout
    assert out["compilers"] == [None, None, None, None]
    best = variants.supported(native.cpu_flags(), MACHINE)[0]
    assert out["native"] is True
    assert out["info"]["kernel"] == f"prebuilt {best.name}", out["info"]
    assert Path(out["info"]["path"]) == installed / "drugrepo_assets" / "screening" / "kernels" / variants.filename(
        best
    )
    assert out["max_diff"] <= 1e-5 and out["spread"] > 0.5
    assert out["home"] == []  # nothing built at first use


def test_without_a_compiler_the_build_succeeds_without_kernels(tmp_path: Path) -> None:
    """No compiler at build time: a wheel all the same, with the source and no library (not even a checkout's own)."""
    src = _context(tmp_path / "src", ignore=("__pycache__", "*.pyc"))
    stale = src / "drugrepo_assets" / "screening" / "kernels" / "screen_fusion.x86-64-v4.so"
    stale.write_bytes(b"left by an editable install")  # in a Docker build context unless .dockerignore drops it
    env = _bare_env(tmp_path / "bare")
    run = subprocess.run(
        [
            str(tmp_path / "bare" / "bin" / "python"),
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-v",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "not prebuilt: no C compiler found" in run.stdout + run.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "drugrepo_assets/screening/kernels/screen_fusion.c" in names
    assert not [n for n in names if n.endswith(".so")], names


def _kernel_dir(installed: Path, tmp_path: Path) -> Path:
    """A copy of the installed kernels folder to take things out of."""
    return Path(shutil.copytree(installed / "drugrepo_assets" / "screening" / "kernels", tmp_path / "kernels"))


def _no_compiler() -> Path:
    raise RuntimeError("no C compiler found (cc/gcc)")


@needs_compiler
def test_resolve_takes_the_prebuilt_kernel_then_a_first_use_build_on_avx512_only(
    installed: Path, tmp_path: Path
) -> None:
    if MACHINE != "x86_64":
        pytest.skip("the ISA variants are x86-64's")
    kernels = _kernel_dir(installed, tmp_path)

    def kind(flags, first_use=_no_compiler) -> native.KernelInfo:
        lib, info = native.resolve(flags, "x86_64", kernels, first_use)
        assert (lib is None) == (info.kernel == "none")
        return info

    # libraries are only loaded here, not run
    assert kind(V4).kernel == "prebuilt x86-64-v4"
    assert kind(V4).path == str(kernels / "screen_fusion.x86-64-v4.so")
    for flags in (V3, V4 - {"avx512bw"}, set()):
        info = kind(flags, first_use=lambda: native.build(tmp_path / "cache"))  # never built: torch is faster there
        assert info.kernel == "none" and "without AVX-512 the torch path is faster" in info.reason
    (kernels / "screen_fusion.x86-64-v4.so").unlink()
    first_use = kind(V4, first_use=lambda: native.build(tmp_path / "cache"))
    assert first_use.kernel == "built at first use" and first_use.path.startswith(str(tmp_path / "cache"))
    assert "no prebuilt x86-64-v4" in first_use.reason
    info = kind(V4)
    assert info.kernel == "none" and "no C compiler" in info.reason


@needs_compiler
def test_a_stale_prebuilt_kernel_is_not_loaded(installed: Path, tmp_path: Path) -> None:
    """A checkout whose kernel source changed after `pip install -e .`: its libraries are skipped, not run."""
    kernels = _kernel_dir(installed, tmp_path)
    source = kernels / variants.SOURCE_NAME
    source.write_text(source.read_text() + "\n/* changed */\n")
    flags = V4 if MACHINE == "x86_64" else set()
    lib, info = native.resolve(flags, MACHINE, kernels, _no_compiler)
    assert lib is None and info.kernel == "none"
    assert "stale" in info.reason
    lib, info = native.resolve(flags, MACHINE, kernels, lambda: native.build(tmp_path / "cache"))
    assert info.kernel == "built at first use"


def test_kernel_info_says_which_kernel_runs() -> None:
    info = native.kernel_info()
    lib = native.fusion_kernel()
    assert (lib is None) == (info.kernel == "none") == (not info.active)
    assert (info.path == "") == (lib is None)
    assert info.kernel in {"none", "built at first use", *(f"prebuilt {v.name}" for v in variants.VARIANTS)}
