"""Batched scoring of (SMILES, protein) pairs with a DrugBAN model, bad rows reported not dropped.

Each distinct SMILES is parsed and featurised once, in a sandbox worker within its CPU and memory
budget (`featurize.compact_answers`): a molecule over it is a bad row (``over_budget``), not a hang.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from drugrepo_assets.data.columns import pair_column_names
from drugrepo_assets.data.rules import clean_protein, protein_refusal
from drugrepo_assets.data.sandbox import Sandbox
from drugrepo_assets.ml.evaluate import sigmoid
from drugrepo_assets.ml.features.dataset import MoleculeStore, PairData
from drugrepo_assets.ml.features.featurize import CompactMolecule, CompactMolecules, compact_answers
from drugrepo_assets.ml.features.protein import encode_proteins
from drugrepo_assets.ml.model.calibration import CALIBRATED_COLUMN, Temperature
from drugrepo_assets.ml.model.drugban import DrugBAN

BATCH_SIZE = 256
"""Pairs scored per model call by default (`predict_logits`, `score_table`; ``drugrepo predict --batch-size``)."""


@torch.no_grad()
def predict_logits(
    model: DrugBAN, data: PairData, batch_size: int = BATCH_SIZE, device: str | torch.device = "cpu"
) -> np.ndarray:
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
    """The input table with ``logit``, ``score``, ``calibrated_score`` and ``error`` columns, and the count of bad rows."""

    table: pd.DataFrame
    n_failed: int


def _row_errors(
    smiles: pd.Series, proteins: pd.Series, max_atoms: int, sandbox: Sandbox | None
) -> tuple[list[str], dict[str, CompactMolecule]]:
    """One error string per row ('' when fine; the input rules' refusal, `data.rules`, or ``over_budget``)
    and the compact molecule of each valid unique SMILES."""
    distinct = pd.unique(smiles).tolist()
    answers = dict(zip(distinct, compact_answers(distinct, max_atoms, sandbox=sandbox)))
    molecules = {s: a for s, a in answers.items() if isinstance(a, CompactMolecule)}
    smiles_error = {s: str(a) for s, a in answers.items() if not isinstance(a, CompactMolecule)}
    protein_error = {p: str(r) for p in pd.unique(proteins) if (r := protein_refusal(p)) is not None}
    errors = [smiles_error.get(s) or protein_error.get(p, "") for s, p in zip(smiles, proteins)]
    return errors, molecules


def score_table(
    model: DrugBAN,
    table: pd.DataFrame,
    smiles_col: str | None = None,
    protein_col: str | None = None,
    batch_size: int = BATCH_SIZE,
    device: str | torch.device = "cpu",
    sandbox: Sandbox | None = None,
    temperature: Temperature | None = None,
) -> ScoredTable:
    """Score every row of ``table``; rows that cannot be scored keep NaN and say why in ``error``.

    The SMILES and protein columns are found under any of their names (`data.columns`) unless named.
    Molecules are featurised in ``sandbox`` (a `data.sandbox.molecule_sandbox`; else the process's shared one).
    ``calibrated_score`` is sigmoid(logit / T) with the checkpoint's ``temperature`` (`ml.model.calibration`; None: T = 1).
    """
    found = {
        field: names[0] for field, names in pair_column_names(table.columns, ("SMILES", "Protein")).items() if names
    }
    smiles_col, protein_col = (
        smiles_col or found.get("SMILES", "SMILES"),
        protein_col or found.get("Protein", "Protein"),
    )
    for col in (smiles_col, protein_col):
        if col not in table.columns:
            raise KeyError(f"missing column {col!r} (found: {', '.join(map(str, table.columns))})")
    smiles = table[smiles_col].fillna("").astype(str)
    raw_proteins = table[protein_col].fillna("").astype(str)
    errors, molecules = _row_errors(smiles, raw_proteins, model.config.max_drug_nodes, sandbox)
    proteins = raw_proteins.map(clean_protein)
    ok = np.array([e == "" for e in errors], dtype=bool)
    logits = np.full(len(table), np.nan, dtype=np.float32)
    if ok.any():
        uniq_s, drug_idx = np.unique(smiles[ok].to_numpy(dtype=object), return_inverse=True)
        uniq_p, prot_idx = np.unique(proteins[ok].to_numpy(dtype=object), return_inverse=True)
        data = PairData(
            molecules=MoleculeStore.from_compact(CompactMolecules.stack([molecules[s] for s in uniq_s])),
            proteins=torch.from_numpy(encode_proteins(uniq_p.tolist(), model.config.max_protein_length)),
            drug_idx=torch.from_numpy(drug_idx.astype(np.int64).reshape(-1)),
            protein_idx=torch.from_numpy(prot_idx.astype(np.int64).reshape(-1)),
        )
        logits[ok] = predict_logits(model, data, batch_size=batch_size, device=device)
    out = table.copy()
    out["logit"] = logits
    out["score"] = sigmoid(logits)
    out[CALIBRATED_COLUMN] = (temperature or Temperature()).apply(logits)
    out["error"] = errors
    return ScoredTable(table=out, n_failed=int((~ok).sum()))
