"""The screening engine gives the model's logits (as predict does) at a fraction of the cost."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drugrepo_assets.data.rules import PROTEIN_ALPHABET
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.features.dataset import MoleculeStore, PairData
from drugrepo_assets.ml.features.protein import encode_proteins
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.ml.model.model_config import DrugBANConfig
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.screening import native
from drugrepo_assets.screening.engine import ScreeningEngine, prepare_library, prepare_targets, rank_table


@pytest.fixture(scope="module")
def golden_model(golden_dir: Path):
    return load_checkpoint(str(golden_dir / "model_state.pt")).model


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


def test_kernel_runs_each_drugs_gcn_v_net_and_contraction() -> None:
    """The kernel against the model's own modules in float64, on molecules of 1 to 250 atoms (groups of 8 and a rest)."""
    lib = native.fusion_kernel()
    assert lib is not None
    gen = torch.Generator().manual_seed(3)
    model = DrugBAN()
    for bn in [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]:  # non-trivial statistics
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.weight.data.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
    model.eval()
    smiles = [
        "C",
        "CC",
        "c1ccccc1",
        "CC(=O)Oc1ccccc1C(=O)O",
        "C" * 250,
        "[Na+].[Cl-]",
        "CN1CCC[C@H]1c1cccnc1",
        "O=C(O)CC(O)(CC(=O)O)C(=O)O",
        "C" * 40,
        "c1ccc2ccccc2c1",
        "CCN(CC)CC",
    ]
    molecules = MoleculeStore.from_smiles(smiles)
    idx = torch.randperm(len(smiles), generator=gen)
    q = torch.randn(3, 200, 768, generator=gen)
    gq, heads = q.transpose(1, 2) @ q, model.bcn.head_sums()[0].detach()
    linear = model.bcn.v_net.main[1]
    with torch.no_grad():
        out, sums = native.screen(
            lib,
            molecules,
            idx,
            native.pack_gcn(model.drug_extractor),
            native.pack_linear(linear.weight(), linear.bias),
            native.pack_targets(gq),
            heads,
            threads=2,
        )
        reference = copy.deepcopy(model).double()
        rows = reference.encode_drugs(molecules.batch(idx))
    for d in range(len(smiles)):
        x = rows.rows[rows.offsets[d] : rows.offsets[d + 1]]
        assert len(x) == molecules.num_nodes[idx[d]]
        torch.testing.assert_close(sums[d].double(), x.sum(0), rtol=0, atol=1e-5 * float(x.sum(0).abs().max()))
        expected = ((x.T @ x).unsqueeze(0) * gq.double() * heads.double()).sum(-1)
        torch.testing.assert_close(out[d].double(), expected, rtol=0, atol=1e-5 * float(expected.abs().max()))


def test_kernel_refuses_widths_it_does_not_take() -> None:
    """A GCN width that is not a multiple of 32 goes to the torch path (same numbers), or is refused when the kernel is asked for."""
    model = DrugBAN(DrugBANConfig(hidden_feats=(48, 48, 48))).eval()
    assert not ScreeningEngine(model).native
    with pytest.raises(RuntimeError, match="not available"):
        ScreeningEngine(model, native=True)


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
    library = pd.DataFrame(
        {"id": ["ok", "bad", "huge", "empty"], "smiles": ["CCO", "C1CC", "C" * 300, ""], "line": [2, 3, 4, 5]}
    )
    molecules, prepared = prepare_library(library)
    assert len(molecules) == 1 and prepared.kept["id"].tolist() == ["ok"]
    assert prepared.rejected["id"].tolist() == ["bad", "huge", "empty"]
    assert prepared.rejected["reason"].tolist() == [
        "SMILES: RDKit cannot parse 'C1CC' (SMILES syntax error)",
        "SMILES: at least 300 atoms, more than the limit of 290",
        "SMILES: value is empty",
    ]
    targets = pd.DataFrame({"id": ["t1", "t2"], "sequence": ["mktay", "MKJ"], "line": [1, 3]})
    codes, tprep = prepare_targets(targets)
    assert codes.shape == (1, 1200) and codes[0, :5].tolist() == [11, 10, 20, 1, 23]
    assert tprep.rejected["reason"].tolist() == [
        f"Protein: character 'J' not in the amino-acid alphabet {PROTEIN_ALPHABET} (first at position 3 of 3)"
    ]
