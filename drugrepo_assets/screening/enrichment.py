"""Retrospective validation of a virtual screen: enrichment factor, BEDROC, AUROC and enrichment curves per target.

Every metric ranks by score descending (a higher logit is a better candidate) and is independent of the
input order: tied scores are handled by expectation over their orderings (EF, the curve) or by the tied
group's average rank (BEDROC, AUROC). Each metric is NaN when there is no active, since none is defined then.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

EF_FRACTIONS: tuple[float, ...] = (0.01, 0.05)
BEDROC_ALPHA: float = 20.0
REPORT_COLUMNS: tuple[str, ...] = (
    "target_id",
    "molecules",
    "actives",
    *(f"ef_{round(f * 100):d}pct" for f in EF_FRACTIONS),
    f"bedroc_{BEDROC_ALPHA:g}",
    "auroc",
)


def _validated(scores: np.ndarray, actives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64 and labels as bool, checked to be 1-D, equally long, non-empty and NaN-free."""
    s = np.asarray(scores, dtype=np.float64)
    a = np.asarray(actives).astype(bool)
    if s.ndim != 1 or a.ndim != 1 or len(s) != len(a):
        raise ValueError(f"scores {s.shape} and actives {a.shape} must be 1-D and of one length")
    if len(s) == 0:
        raise ValueError("no molecules to rank")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN: an unscored molecule has no rank")
    return s, a


def _tie_groups(scores: np.ndarray, actives: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Groups of equal score, best first: each item's group, and each group's size, actives and items ranked above."""
    _, group, sizes = np.unique(-scores, return_inverse=True, return_counts=True)
    group = group.ravel()
    group_actives = np.bincount(group, weights=actives, minlength=len(sizes))
    above = np.cumsum(sizes) - sizes
    return group, sizes, group_actives, above


def _expected_found(scores: np.ndarray, actives: np.ndarray) -> np.ndarray:
    """Expected actives among the top k, k = 1..N, averaged over the orderings of tied scores (so order-free)."""
    _, sizes, group_actives, above = _tie_groups(scores, actives)
    actives_above = np.cumsum(group_actives) - group_actives
    g = np.repeat(np.arange(len(sizes)), sizes)  # the tie group at each rank position
    k = np.arange(1, len(scores) + 1)
    return actives_above[g] + group_actives[g] * (k - above[g]) / sizes[g]


def _average_ranks(scores: np.ndarray, actives: np.ndarray) -> np.ndarray:
    """1-based rank of each item by score descending, tied items all getting their group's average rank."""
    group, sizes, _, above = _tie_groups(scores, actives)
    return (above + (sizes + 1) / 2.0)[group]


def _cutoff(fraction: float, n_molecules: int) -> int:
    """Molecules in the top `fraction` of the ranked library: ceil(fraction · N), at least 1."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    # rounded first so that float noise (0.07 · 100 = 7.000000000000001) does not add a molecule
    return max(1, math.ceil(round(fraction * n_molecules, 9)))


def enrichment_factor(scores: np.ndarray, actives: np.ndarray, fraction: float) -> float:
    """EF at a fraction of the ranked library: actives in the top n over the n·A/N a random ranking finds.

    n = ceil(fraction · N), at least 1. When the cut falls inside a group of tied scores, the actives of
    that group count in proportion to the share of it above the cut (the expected value over all orderings
    of the ties), so the result never depends on input order. NaN when there is no active.
    """
    s, a = _validated(scores, actives)
    n_actives = int(a.sum())
    if n_actives == 0:
        return float("nan")
    n = _cutoff(fraction, len(s))
    found = _expected_found(s, a)[n - 1]
    return float(found / (n * n_actives / len(s)))


def bedroc(scores: np.ndarray, actives: np.ndarray, alpha: float = BEDROC_ALPHA) -> float:
    """BEDROC (Truchon & Bayly 2007, from RIE as in RDKit's CalcBEDROC): early recognition scaled to [0, 1].

    Tied scores take their group's average rank, so the result is order-independent. NaN when there is
    no active; 1.0 when every molecule is active (RIEmax = RIEmin), as RDKit returns.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    s, a = _validated(scores, actives)
    n_molecules, n_actives = len(s), int(a.sum())
    if n_actives == 0:
        return float("nan")
    if n_actives == n_molecules:
        return 1.0
    ranks = _average_ranks(s, a)[a]
    random_sum = (1.0 / n_molecules) * (-math.expm1(-alpha)) / math.expm1(alpha / n_molecules)
    rie = float(np.exp(-alpha * ranks / n_molecules).sum()) / (n_actives * random_sum)
    ratio = n_actives / n_molecules
    rie_max = -math.expm1(-alpha * ratio) / (ratio * -math.expm1(-alpha))
    # (1 - e^{α·ratio}) / (ratio · (1 - e^α)), rewritten so that a large α does not overflow
    rie_min = math.exp(-alpha * (1.0 - ratio)) * -math.expm1(-alpha * ratio) / (ratio * -math.expm1(-alpha))
    return (rie - rie_min) / (rie_max - rie_min)


def auroc(scores: np.ndarray, actives: np.ndarray) -> float:
    """AUROC as the Mann–Whitney probability that an active outscores an inactive, ties counting 1/2.

    Equals sklearn's roc_auc_score. NaN when there is no active or no inactive.
    """
    s, a = _validated(scores, actives)
    n_actives = int(a.sum())
    n_inactives = len(s) - n_actives
    if n_actives == 0 or n_inactives == 0:
        return float("nan")
    ascending_ranks = len(s) + 1 - _average_ranks(s, a)[a]
    u = ascending_ranks.sum() - n_actives * (n_actives + 1) / 2.0
    return float(u / (n_actives * n_inactives))


def _scorable_targets(table: pd.DataFrame) -> list[tuple[object, np.ndarray, np.ndarray]]:
    """(target_id, logits, actives) of each target with an active and an inactive, in order of first appearance."""
    missing = {"target_id", "logit", "active"} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks columns {sorted(missing)}")
    targets = []
    for target_id, rows in table.groupby("target_id", sort=False):
        logits = rows["logit"].to_numpy(dtype=np.float64)
        active = rows["active"].to_numpy().astype(bool)
        if 0 < active.sum() < len(active):
            targets.append((target_id, logits, active))
    return targets


def retrospective_report(table: pd.DataFrame) -> pd.DataFrame:
    """One row of EF at 1 % and 5 %, BEDROC (α = 20) and AUROC per target, to judge the screen on known actives.

    Input columns: target_id, logit, active (bool). Targets without an active or without an inactive are
    omitted, as none of the metrics would be meaningful for them. Rows follow the targets' first appearance.
    """
    rows = []
    for target_id, logits, active in _scorable_targets(table):
        efs = [enrichment_factor(logits, active, f) for f in EF_FRACTIONS]
        rows.append((target_id, len(logits), int(active.sum()), *efs, bedroc(logits, active), auroc(logits, active)))
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS))


def enrichment_plot(table: pd.DataFrame) -> bytes:
    """PNG of each target's enrichment curve (actives found vs library screened, log x) against random.

    Same input and same targets as `retrospective_report`; tied scores are drawn as their expected curve.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from drugrepo_assets.figures import png_bytes

    targets = _scorable_targets(table)
    figure, ax = plt.subplots(figsize=(4, 3.5))
    smallest = 1.0
    for target_id, logits, active in targets:
        n = len(logits)
        screened = np.arange(1, n + 1) / n
        found = _expected_found(logits, active) / active.sum()
        ax.plot(screened, found, linewidth=1.0, label=str(target_id))
        smallest = min(smallest, 1.0 / n)
    diagonal = np.logspace(np.log10(smallest), 0.0, 100)
    ax.plot(diagonal, diagonal, linestyle="--", color="grey", linewidth=0.8, label="random")
    for fraction in EF_FRACTIONS:
        ax.axvline(fraction, linestyle=":", color="lightgrey", linewidth=0.8)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide when the library spans under a decade
    ax.set(
        xlabel="fraction of ranked library screened",
        ylabel="fraction of actives found",
        title="enrichment" if targets else "enrichment (no target with actives and inactives)",
        xlim=(smallest, 1.0),
        ylim=(0, 1.01),
    )
    if len(targets) <= 12:
        ax.legend(loc="upper left", fontsize="small")
    return png_bytes(figure)
