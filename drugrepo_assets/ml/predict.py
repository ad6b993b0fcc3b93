"""Batched scoring of (SMILES, protein) pairs with a DrugBAN model, bad rows reported not dropped."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from drugrepo_assets.ml.dataset import MoleculeStore, PairData
from drugrepo_assets.ml.evaluate import sigmoid
from drugrepo_assets.ml.featurize import PROTEIN_ALPHABET, InvalidSmilesError, drug_graph, encode_proteins
from drugrepo_assets.ml.model import DrugBAN


@torch.no_grad()
def predict_logits(model: DrugBAN, data: PairData, batch_size: int = 256, device: str | torch.device = "cpu") -> np.ndarray:
    """Eval-mode logits of every pair, in input order.

    Pairs are visited sorted by protein length, then protein, so that each protein's CNN runs
    about once and a batch's convolutions span no more positions than its longest sequence needs.
    """
    model.eval()
    lengths = (data.proteins != 0).int().cumsum(1).argmax(1)
    order = torch.argsort(lengths[data.protein_idx] * len(data.proteins) + data.protein_idx, stable=True)
    out = torch.empty(len(data), dtype=torch.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        graphs, proteins = data.batch(rows)
        out[rows] = model(graphs.to(device), proteins.to(device)).float().cpu()
    return out.numpy()


@dataclass
class ScoredTable:
    """The input table with ``logit``, ``score`` and ``error`` columns, and the count of bad rows."""

    table: pd.DataFrame
    n_failed: int


def _row_errors(smiles: pd.Series, proteins: pd.Series, max_atoms: int) -> tuple[list[str], dict[str, object]]:
    """One error string per row ('' when fine) and the parsed graph of each valid unique SMILES."""
    graphs: dict[str, object] = {}
    smiles_error: dict[str, str] = {}
    for s in pd.unique(smiles):
        try:
            g = drug_graph(s)
        except InvalidSmilesError:
            smiles_error[s] = f"SMILES: cannot parse {s!r}"
            continue
        if g.num_nodes > max_atoms:
            smiles_error[s] = f"SMILES: {g.num_nodes} atoms, more than DrugBAN's {max_atoms}"
        else:
            graphs[s] = g
    allowed = set(PROTEIN_ALPHABET)
    errors = []
    for s, p in zip(smiles, proteins):
        if not s:
            errors.append("SMILES: empty")
        elif s in smiles_error:
            errors.append(smiles_error[s])
        elif not p:
            errors.append("Protein: empty")
        elif not set(p) <= allowed:
            bad = "".join(sorted(set(p) - allowed))
            errors.append(f"Protein: letters {bad!r} outside DrugBAN's 25-letter alphabet")
        else:
            errors.append("")
    return errors, graphs


def score_table(
    model: DrugBAN,
    table: pd.DataFrame,
    smiles_col: str = "SMILES",
    protein_col: str = "Protein",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> ScoredTable:
    """Score every row of ``table``; rows that cannot be scored keep NaN and say why in ``error``."""
    for col in (smiles_col, protein_col):
        if col not in table.columns:
            raise KeyError(f"missing column {col!r} (found: {', '.join(map(str, table.columns))})")
    smiles = table[smiles_col].fillna("").astype(str).str.strip()
    proteins = table[protein_col].fillna("").astype(str).str.strip().str.upper()
    errors, graphs = _row_errors(smiles, proteins, model.config.max_drug_nodes)
    ok = np.array([e == "" for e in errors], dtype=bool)
    logits = np.full(len(table), np.nan, dtype=np.float32)
    if ok.any():
        uniq_s, drug_idx = np.unique(smiles[ok].to_numpy(dtype=object), return_inverse=True)
        uniq_p, prot_idx = np.unique(proteins[ok].to_numpy(dtype=object), return_inverse=True)
        data = PairData(
            molecules=MoleculeStore.from_graphs([graphs[s] for s in uniq_s]),
            proteins=torch.from_numpy(encode_proteins(uniq_p.tolist(), model.config.max_protein_length)),
            drug_idx=torch.from_numpy(drug_idx.astype(np.int64).reshape(-1)),
            protein_idx=torch.from_numpy(prot_idx.astype(np.int64).reshape(-1)),
        )
        logits[ok] = predict_logits(model, data, batch_size=batch_size, device=device)
    out = table.copy()
    out["logit"] = logits
    out["score"] = sigmoid(logits)
    out["error"] = errors
    return ScoredTable(table=out, n_failed=int((~ok).sum()))
