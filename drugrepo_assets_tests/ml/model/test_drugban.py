"""DrugBAN: the golden reference checkpoint, a literal transcription of the reference, checkpoints."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from drugrepo_assets.ml.features.dataset import PairData
from drugrepo_assets.ml.features.featurize import drug_graph
from drugrepo_assets.ml.features.protein import encode_proteins
from drugrepo_assets.ml.model import drugban as model_mod
from drugrepo_assets.ml.model.checkpoint import (
    checkpoint_id,
    load_checkpoint,
)
from drugrepo_assets.ml.model.drugban import DrugBAN, EvalHead
from drugrepo_assets.ml.model.model_config import DrugBANConfig
from drugrepo_assets.ml.predict import predict_logits

SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O",
    "CN1CCC[C@H]1c1cccnc1",
    "[Na+].[Cl-]",
    "O=C(O)c1ccccc1O",
    "C1CCCCC1",
]
PROTEINS = [
    "MKTAYIAKQRQISFVKSHFSRQ",
    "MSEQNNTEMTFQIQRIYTKDISFEAPNAPHVFQKDWLRRKG" * 4,
    "MGLVSSKKPDKEKPIKEKDKGQWSPLKVSAQDKDAPPLPPL" * 40,  # longer than 1200: truncated
    "ACDEFGHIKLMNPQRSTVWYXBZUO",
    "MPV",
]


def reference_forward(model: DrugBAN, smiles: list[str], proteins: torch.Tensor) -> torch.Tensor:
    """DrugBAN as the reference computes it: 290 materialised nodes, dense adjacency, per-head maps."""
    c = model.config
    n_max = c.max_drug_nodes
    feats, adj = [], []
    for s in smiles:
        g = drug_graph(s)
        n = g.num_nodes
        x = torch.zeros(n_max, 75)
        x[:n, :74] = torch.tensor(g.node_feats)
        x[n:, 74] = 1.0
        a = torch.eye(n_max)  # the reference's add_self_loop() on the padded graph
        src, dst = torch.tensor(g.edge_index)
        a.index_put_((dst, src), torch.ones(len(src)), accumulate=True)
        feats.append(x)
        adj.append(a)
    dtype = model.drug_extractor.init_transform.weight.dtype
    x = torch.stack(feats).to(dtype)
    a = torch.stack(adj).to(dtype)
    h = x @ model.drug_extractor.init_transform.weight.T
    for layer in model.drug_extractor.gnn.gnn_layers:
        conv = F.relu(torch.bmm(a, h) @ layer.graph_conv.weight + layer.graph_conv.bias)
        out = conv + F.relu(layer.res_connection(h))
        h = layer.bn_layer(out.reshape(-1, out.shape[-1])).reshape(out.shape)
    pe = model.protein_extractor
    p = pe.embedding(proteins).transpose(2, 1)
    p = pe.bn1(F.relu(pe.conv1(p)))
    p = pe.bn2(F.relu(pe.conv2(p)))
    p = pe.bn3(F.relu(pe.conv3(p)))
    p = p.view(p.size(0), p.size(2), -1)
    bcn = model.bcn
    v_ = bcn.v_net(h)
    q_ = bcn.q_net(p)
    h_mat = bcn.h_mat_v * (bcn.h_mat_g / torch.linalg.vector_norm(bcn.h_mat_v))
    att = torch.einsum("xhyk,bvk,bqk->bhvq", h_mat, v_, q_) + bcn.h_bias
    fusion = sum(torch.einsum("bvk,bvq,bqk->bk", v_, att[:, i], q_) for i in range(c.ban_heads))
    pooled = F.avg_pool1d(fusion.unsqueeze(1), c.ban_k, stride=c.ban_k).squeeze(1) * c.ban_k
    return model.mlp_classifier(bcn.bn(pooled)).squeeze(-1)


def _randomise_batchnorm(model: DrugBAN, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters, so BatchNorm is really exercised."""
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=gen) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=gen) * 0.1)


@pytest.fixture()
def pairs() -> PairData:
    return PairData.from_lists(SMILES, PROTEINS, [1, 0, 1, 0, 1])


def test_golden_checkpoint_loads_strictly_and_reproduces_logits(golden_dir: Path) -> None:
    loaded = load_checkpoint(str(golden_dir / "model_state.pt"))
    model = loaded.model
    assert loaded.extra == {"checkpoint_id": checkpoint_id(model)}
    expected_keys = [line.split("\t")[0] for line in (golden_dir / "model_params.txt").read_text().splitlines()]
    assert list(model.state_dict().keys()) == expected_keys
    df = pd.read_csv(golden_dir / "model_pairs.csv")
    io = np.load(golden_dir / "model_io.npz")
    data = PairData.from_lists(df.SMILES.tolist(), df.Protein.tolist(), df.Y.tolist())
    logits = predict_logits(model, data, batch_size=64)
    np.testing.assert_allclose(logits, io["logit"], atol=1e-5, rtol=0)
    assert np.ptp(io["logit"]) > 1.0  # outputs vary widely: the comparison means something


def test_golden_attention_maps(golden_dir: Path) -> None:
    model = load_checkpoint(str(golden_dir / "model_state.pt")).model
    df = pd.read_csv(golden_dir / "model_pairs.csv").head(2)
    data = PairData.from_lists(df.SMILES.tolist(), df.Protein.tolist())
    graphs, proteins = data.batch(torch.arange(2))
    att = model.attention_maps(graphs, proteins).numpy()
    expected = np.load(golden_dir / "model_io.npz")["att_first2"]
    assert att.shape == expected.shape == (2, 2, 290, 1185)
    np.testing.assert_allclose(att, expected, atol=1e-4, rtol=0)


def test_eval_matches_literal_reference_on_short_and_long_proteins(pairs: PairData) -> None:
    """In float64, so that any difference is the algebra's, not float32 rounding's."""
    torch.manual_seed(1)
    model = DrugBAN().double()
    _randomise_batchnorm(model)
    model.eval()
    with torch.no_grad():
        graphs, proteins = pairs.batch(torch.arange(len(pairs)))
        ours = model(graphs, proteins)
        ref = reference_forward(model, [data_smiles(pairs, i) for i in range(len(pairs))], proteins)
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, ref, atol=1e-9, rtol=1e-9)


def test_train_mode_matches_literal_reference_including_batchnorm_statistics() -> None:
    """Training forward, gradients and BatchNorm running-stat updates equal the padded reference."""
    torch.manual_seed(2)
    model = DrugBAN(DrugBANConfig(ban_dropout=0.0)).double()  # dropout is random: switch it off
    _randomise_batchnorm(model)
    ref_model = copy.deepcopy(model)
    model.train()
    ref_model.train()
    data = PairData.from_lists(SMILES, PROTEINS)
    graphs, proteins = data.batch(torch.arange(len(SMILES)))
    ours = model(graphs, proteins)
    ref = reference_forward(ref_model, [data_smiles(data, i) for i in range(len(SMILES))], proteins)
    torch.testing.assert_close(ours, ref, atol=1e-9, rtol=1e-9)
    ours.sum().backward()
    ref.sum().backward()
    for (name, p), (_, q) in zip(model.named_parameters(), ref_model.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-8, rtol=1e-7, msg=name)
    for (name, b), (_, r) in zip(model.named_buffers(), ref_model.named_buffers()):
        torch.testing.assert_close(b, r, atol=1e-9, rtol=1e-9, msg=name)


def data_smiles(data: PairData, i: int) -> str:
    """The SMILES string of pair ``i`` (PairData stores molecules deduplicated and sorted)."""
    return sorted(set(SMILES))[int(data.drug_idx[i])]


def test_gram_and_direct_fusion_agree(pairs: PairData, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(3)
    model = DrugBAN().double().eval()
    _randomise_batchnorm(model)
    graphs, proteins = pairs.batch(torch.arange(len(pairs)))
    with torch.no_grad():
        direct = model(graphs, proteins)
        monkeypatch.setattr(model_mod, "use_gram", lambda *_: True)
        gram = model(graphs, proteins)
    torch.testing.assert_close(gram, direct, atol=1e-9, rtol=1e-9)


def test_eval_head_folds_batchnorms_into_the_linears() -> None:
    """Pooling + 4 BatchNorms + MLP as 4 Linear maps: the same logits as the modules, BatchNorm statistics non-trivial."""
    model = DrugBAN()
    _randomise_batchnorm(model)
    model.eval()
    fusion = 30 * torch.randn(
        300, model.config.mlp_in_dim * model.config.ban_k, generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        expected = model.mlp_classifier(model.bcn.pool(fusion)).squeeze(-1)
        got = EvalHead(model.bcn, model.mlp_classifier)(fusion)
    assert got.shape == (300,) and float(expected.std()) > 0.5
    torch.testing.assert_close(got, expected, rtol=0, atol=3e-6 * float(expected.abs().max()))


def test_molecule_over_290_atoms_is_refused() -> None:
    """Featurisation refuses it (the input rules); a graph built past the rules still cannot reach the model."""
    from drugrepo_assets.ml.features.featurize import InvalidSmilesError, collate_graphs, drug_graph

    with pytest.raises(InvalidSmilesError, match="at least 300 atoms, more than the limit of 290"):
        PairData.from_lists(["C" * 300], ["MKT"])
    model = DrugBAN().eval()
    graphs = collate_graphs([drug_graph("C" * 300, max_atoms=1000)])
    with pytest.raises(ValueError, match="more than 290 atoms"):
        model(graphs, torch.from_numpy(encode_proteins(["MKT"])))
