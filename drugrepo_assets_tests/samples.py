"""Small real inputs for tests: the first rows of a bundled DrugBAN file, laid out as a source folder."""

from __future__ import annotations

from pathlib import Path

from drugrepo_assets.data.sources import bundled_root


def write_sample_source(root: Path, rows: int, dataset: str = "human", split_file: str = "random/train.csv") -> Path:
    """Write the header and the first ``rows`` rows of ``<bundled>/<dataset>/<split_file>`` under ``root``.

    The file keeps its relative path (``<root>/<dataset>/random/train.csv``), so it reads as a
    shipped split; returns ``root``, the `DataSourceResource` root to use.
    """
    lines = (bundled_root() / dataset / split_file).read_text().splitlines(keepends=True)
    target = root / dataset / split_file
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(lines[: rows + 1]))
    return root


OFFLINE_KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "offline", "user": {"token": "unused"}}],
    "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
    "current-context": "offline",
}
"""A kubeconfig that the kubernetes client loads without a cluster (nothing ever connects to it)."""
