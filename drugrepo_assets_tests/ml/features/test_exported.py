"""Exported features (`ml.features.exported`): the pairs read back are the pipeline's, a damaged folder is refused, and
training on them runs where RDKit cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from drugrepo_assets.data.columns import read_pairs
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.data.validate import validate_pairs
from drugrepo_assets.ml.features.exported import (
    MANIFEST,
    ExportedFeatures,
    ExportedFeaturesError,
    export_parts,
    read_parts,
)
from drugrepo_assets.ml.training.pipeline import pair_data
from drugrepo_assets_tests.ml.training.small import SMALL

NO_RDKIT = "import sys\nfor name in ('rdkit', 'upath', 'dagster'):\n    sys.modules[name] = None\n"
"""A sitecustomize that makes RDKit (and upath and Dagster, absent on the GPU machine too) unimportable."""


@pytest.fixture(scope="module")
def parts() -> dict[str, pd.DataFrame]:
    raw = read_pairs(str(bundled_root() / "human" / "random" / "val.csv"))
    valid = validate_pairs(raw.sample(n=96, random_state=0)).valid
    return {"train": valid.iloc[:48], "val": valid.iloc[48:72], "test": valid.iloc[72:]}


@pytest.fixture(scope="module")
def exported(parts: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exported")
    export_parts(parts, out)
    return out


def test_exported_pairs_are_the_pipelines_pairs(parts: dict[str, pd.DataFrame], exported: Path) -> None:
    read = read_parts(exported)
    assert list(read) == ["train", "val", "test"]
    for name, table in parts.items():
        ours, theirs = read[name], pair_data(table)
        rows = torch.arange(len(table))
        (g1, p1), (g2, p2) = ours.batch(rows), theirs.batch(rows)
        assert torch.equal(g1.node_feats, g2.node_feats) and torch.equal(g1.edge_index, g2.edge_index)
        assert torch.equal(g1.num_nodes, g2.num_nodes)
        assert torch.equal(p1, p2)
        assert torch.equal(ours.require_labels(), theirs.require_labels())


def _copy(exported: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    folder.mkdir()
    for path in exported.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def test_an_unknown_drug_id_is_refused_naming_file_row_and_field(exported: Path, tmp_path: Path) -> None:
    folder = _copy(exported, tmp_path)
    table = pq.read_table(folder / "val.parquet").to_pandas()
    table.loc[3, "drug_id"] = "Dnot-exported"
    pq.write_table(
        pa.Table.from_pandas(table, pq.read_schema(exported / "val.parquet"), preserve_index=False),
        folder / "val.parquet",
    )
    with pytest.raises(ExportedFeaturesError, match=r"val\.parquet: row 3: drug_id Dnot-exported is not among"):
        ExportedFeatures.load(folder).pairs("val")


def test_another_encoding_is_refused(exported: Path, tmp_path: Path) -> None:
    folder = _copy(exported, tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["drug_encoding"] = "drug_graphs-v1"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ExportedFeaturesError, match=r"manifest\.json: drug_encoding is 'drug_graphs-v1'"):
        ExportedFeatures.load(folder)


def test_a_bond_outside_its_molecule_is_refused_by_the_stores_checks(exported: Path, tmp_path: Path) -> None:
    folder = _copy(exported, tmp_path)
    drugs = pq.read_table(folder / "drugs.parquet").to_pandas()
    drugs.loc[0, "bonds"] = (b"\x7f\x00" * 2) + drugs.loc[0, "bonds"][4:]  # bond 0 to atom 127
    pq.write_table(
        pa.Table.from_pandas(drugs, pq.read_schema(exported / "drugs.parquet"), preserve_index=False),
        folder / "drugs.parquet",
    )
    with pytest.raises(ExportedFeaturesError, match=r"drugs\.parquet: molecule 0 has a bond to atom 127"):
        ExportedFeatures.load(folder)


def test_training_from_exported_features_imports_no_rdkit(exported: Path, tmp_path: Path) -> None:
    (tmp_path / "shim").mkdir()
    (tmp_path / "shim" / "sitecustomize.py").write_text(NO_RDKIT)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import json\n"
        "from drugrepo_assets.ml.features.exported import read_parts\n"
        "from drugrepo_assets.ml.model.model_config import DrugBANConfig\n"
        "from drugrepo_assets.ml.training.pipeline import train_and_evaluate\n"
        "from drugrepo_assets.ml.training.train import TrainConfig\n"
        "parts = read_parts(sys.argv[1])\n"
        "config = TrainConfig(epochs=1, batch_size=16, patience=None, device='cpu')\n"
        "small = DrugBANConfig.from_dict(json.loads(sys.argv[3]))\n"
        "result, evaluation = train_and_evaluate(parts, Path(sys.argv[2]), config, small)\n"
        "assert sys.modules['rdkit'] is None, 'RDKit was imported'\n"
        "print(len(result.history), evaluation.metrics.test.auroc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shim")}
    small = json.dumps(SMALL.to_dict())  # the imports are proved, not learning: the small DrugBAN trains
    done = subprocess.run(
        [sys.executable, "-c", script, str(exported), str(tmp_path / "run"), small],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    epochs, auroc = done.stdout.split()
    assert epochs == "1" and 0.0 <= float(auroc) <= 1.0
    assert (tmp_path / "run" / "best.pt").exists()
