"""The screening engine gives the model's logits (as predict does) at a fraction of the cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.dataset import MoleculeStore, PairData
from drugrepo_assets.ml.featurize import encode_proteins
from drugrepo_assets.ml import native
from drugrepo_assets.ml.model import load_checkpoint
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.ml.screen import ScreeningEngine, prepare_library, prepare_targets, rank_table


@pytest.fixture(scope="module")
def golden_model(golden_dir: Path):
    return load_checkpoint(str(golden_dir / "model_state.pt"))[0]


@pytest.fixture(scope="module")
def library_and_targets() -> tuple[list[str], list[str]]:
    rows = pd.read_csv(bundled_root() / "bindingdb" / "sample" / "train.csv")
    rng = np.random.default_rng(7)
    smiles = list(rng.choice(rows["SMILES"].unique(), 23, replace=False))
    big = max(rows["SMILES"].unique(), key=len)  # the largest molecule of the sample: many kernel blocks
    proteins = list(rng.choice(rows["Protein"].unique(), 5, replace=False))
    return ["C", *smiles, big], proteins  # "C": one atom, a Gram matrix of rank one


@pytest.mark.parametrize("native", [True, False], ids=["c-kernel", "torch"])
def test_screen_equals_predict_on_every_pair(golden_model, library_and_targets, native: bool) -> None:
    smiles, proteins = library_and_targets
    engine = ScreeningEngine(golden_model, drug_chunk=6, target_chunk=2, native=native)
    assert engine.native is native
    matrix = engine.score_matrix(MoleculeStore.from_smiles(smiles), torch.from_numpy(encode_proteins(proteins)))
    pairs = PairData.from_lists([s for s in smiles for _ in proteins], [p for _ in smiles for p in proteins])
    expected = predict_logits(golden_model, pairs).reshape(len(smiles), len(proteins))
    np.testing.assert_allclose(matrix, expected, atol=1e-5, rtol=0)
    assert np.ptp(expected) > 0.5


def test_chunking_does_not_change_scores(golden_model, library_and_targets) -> None:
    smiles, proteins = library_and_targets
    molecules = MoleculeStore.from_smiles(smiles)
    codes = torch.from_numpy(encode_proteins(proteins))
    one = ScreeningEngine(golden_model, drug_chunk=1, target_chunk=1).score_matrix(molecules, codes)
    many = ScreeningEngine(golden_model, drug_chunk=64, target_chunk=64).score_matrix(molecules, codes)
    np.testing.assert_allclose(one, many, atol=5e-6, rtol=0)  # float32 rounding of other batch shapes only


def test_kernel_is_built_per_source_and_cached(tmp_path: Path) -> None:
    first = native.build(tmp_path)
    assert first.exists() and first.parent.parent == tmp_path
    stamp = first.stat().st_mtime_ns
    assert native.build(tmp_path) == first and first.stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_kernel_contracts_each_drugs_gram_matrix_with_each_target() -> None:
    """The kernel's output against the definition, in float64, on drugs of many sizes (groups of 8 and a rest)."""
    lib = native.fusion_kernel()
    assert lib is not None
    gen = torch.Generator().manual_seed(3)
    sizes = [1, 2, 7, 40, 3, 95, 11, 8, 30, 290, 5]
    offsets = torch.tensor([0, *np.cumsum(sizes)])
    atoms = torch.randn(int(offsets[-1]), 128, generator=gen)
    weight, bias = torch.randn(768, 128, generator=gen) / 10, torch.randn(768, generator=gen) / 10
    q = torch.randn(3, 200, 768, generator=gen)
    gq, heads = q.transpose(1, 2) @ q, torch.randn(768, generator=gen)
    packed = native.pack_targets(gq)
    out, sums = native.fusion(lib, atoms, offsets, native.pack_vnet(weight, bias), packed, heads, threads=2)
    for d in range(len(sizes)):
        x = (atoms[offsets[d] : offsets[d + 1]].double() @ weight.double().T + bias.double()).relu()
        assert 0.2 < float((x > 0).double().mean()) < 0.8  # ReLU cuts a real share of the entries
        torch.testing.assert_close(sums[d].double(), x.sum(0), rtol=1e-5, atol=1e-4)
        expected = ((x.T @ x).unsqueeze(0) * gq.double() * heads.double()).sum(-1)
        torch.testing.assert_close(out[d].double(), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_rank_table_ranks_and_percentiles() -> None:
    logits = np.array([[0.5, -1.0], [2.0, -1.0], [0.5, 3.0], [-3.0, 0.0]], dtype=np.float32)
    table = rank_table(logits, ["a", "b", "c", "d"], ["Ca", "Cb", "Cc", "Cd"], ["T1", "T2"], "ck")
    t1 = table[table.target_id == "T1"]
    assert t1["drug_id"].tolist() == ["b", "a", "c", "d"]
    assert t1["rank"].tolist() == [1, 2, 2, 4]  # a and c tie
    assert t1["percentile"].tolist() == [100.0, 75.0, 75.0, 25.0]
    t2 = table[table.target_id == "T2"]
    assert t2["drug_id"].tolist() == ["c", "d", "a", "b"]
    assert t2["rank"].tolist() == [1, 2, 3, 3]
    np.testing.assert_allclose(table["score"], 1 / (1 + np.exp(-table["logit"].astype(float))), rtol=1e-6)
    top = rank_table(logits, ["a", "b", "c", "d"], ["Ca", "Cb", "Cc", "Cd"], ["T1", "T2"], "ck", top=1)
    assert top[["target_id", "drug_id"]].values.tolist() == [["T1", "b"], ["T2", "c"]]
    assert set(table["checkpoint_id"]) == {"ck"}


def test_invalid_inputs_are_reported_not_dropped() -> None:
    library = pd.DataFrame({"id": ["ok", "bad", "huge", "empty"], "smiles": ["CCO", "C1CC", "C" * 300, ""], "line": [2, 3, 4, 5]})
    molecules, prepared = prepare_library(library)
    assert len(molecules) == 1 and prepared.kept["id"].tolist() == ["ok"]
    assert prepared.rejected["id"].tolist() == ["bad", "huge", "empty"]
    assert prepared.rejected["reason"].tolist() == [
        "SMILES: cannot parse 'C1CC'",
        "SMILES: 300 atoms, more than DrugBAN's 290",
        "SMILES: empty",
    ]
    targets = pd.DataFrame({"id": ["t1", "t2"], "sequence": ["mktay", "MKJ"], "line": [1, 3]})
    codes, tprep = prepare_targets(targets)
    assert codes.shape == (1, 1200) and codes[0, :5].tolist() == [11, 10, 20, 1, 23]
    assert tprep.rejected["reason"].tolist() == ["sequence: letters 'J' outside DrugBAN's 25-letter alphabet"]
