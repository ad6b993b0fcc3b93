"""Retrospective-validation metrics: EF, BEDROC and AUROC against hand values, RDKit and sklearn; report and plot."""

import io
import math

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from rdkit.ML.Scoring.Scoring import CalcBEDROC
from sklearn.metrics import roc_auc_score

from drugrepo_assets.screening.enrichment import (
    BEDROC_ALPHA,
    EF_FRACTIONS,
    auroc,
    bedroc,
    enrichment_factor,
    enrichment_plot,
    retrospective_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# 10 molecules, scores 10..1 (tie-free), actives at ranks 1, 4 and 7: N = 10, A = 3
SCORES = np.arange(10, 0, -1, dtype=float)
ACTIVES = np.isin(np.arange(1, 11), [1, 4, 7])


def test_enrichment_factor_hand_values() -> None:
    # fraction 0.01: n = ceil(0.1) = 1; top 1 holds 1 active; EF = 1 / (1 · 3/10) = 10/3
    assert enrichment_factor(SCORES, ACTIVES, 0.01) == pytest.approx(10 / 3)
    # fraction 0.2: n = 2; top 2 hold 1 active; EF = 1 / (2 · 3/10) = 5/3
    assert enrichment_factor(SCORES, ACTIVES, 0.2) == pytest.approx(5 / 3)
    # fraction 0.5: n = 5; top 5 hold 2 actives (ranks 1, 4); EF = 2 / (5 · 3/10) = 4/3
    assert enrichment_factor(SCORES, ACTIVES, 0.5) == pytest.approx(4 / 3)
    # fraction 1: n = 10; all 3 actives; EF = 3 / (10 · 3/10) = 1
    assert enrichment_factor(SCORES, ACTIVES, 1.0) == pytest.approx(1.0)
    # the best score last in the input: ranking is by score, not by position
    assert enrichment_factor(SCORES[::-1], ACTIVES[::-1], 0.2) == pytest.approx(5 / 3)


def test_enrichment_cut_is_not_moved_by_float_noise() -> None:
    # 0.07 · 100 = 7.000000000000001 in floats; n must be 7, not 8.
    # actives at ranks 1..7: top 7 hold 7 actives; EF = 7 / (7 · 7/100) = 100/7 (with n = 8 it would be 100/8)
    scores = np.arange(100, 0, -1, dtype=float)
    actives = np.arange(100) < 7
    assert enrichment_factor(scores, actives, 0.07) == pytest.approx(100 / 7)


def test_enrichment_ties_at_the_cut_count_in_proportion() -> None:
    # scores 9, 8, then a tie of four at 5, then 2, 1, 0, -1; actives: the 9 and two of the tied 5s. N = 10, A = 3.
    # fraction 0.4: n = 4 = the 2 above the tie + 2 of the 4 tied; expected actives = 1 + 2 · 2/4 = 2;
    # EF = 2 / (4 · 3/10) = 5/3, whichever tied items are the actives and wherever they sit in the input
    scores = np.array([9, 8, 5, 5, 5, 5, 2, 1, 0, -1], dtype=float)
    for tied_actives in ([2, 3], [4, 5], [2, 5]):
        actives = np.isin(np.arange(10), [0, *tied_actives])
        assert enrichment_factor(scores, actives, 0.4) == pytest.approx(5 / 3)
    # fraction 0.3: n = 3 = 2 above + 1 of 4 tied; expected = 1 + 2 · 1/4 = 1.5; EF = 1.5 / (3 · 3/10) = 5/3
    actives = np.isin(np.arange(10), [0, 2, 3])
    assert enrichment_factor(scores, actives, 0.3) == pytest.approx(5 / 3)
    # fraction 0.2: n = 2, cut above the tie: 1 active; EF = 1 / (2 · 3/10) = 5/3 -- and 0.1: 1 / (1 · 0.3) = 10/3
    assert enrichment_factor(scores, actives, 0.1) == pytest.approx(10 / 3)
    # everything tied: every cut finds A · n/N actives in expectation, so EF = 1
    flat = np.zeros(10)
    assert enrichment_factor(flat, actives, 0.1) == pytest.approx(1.0)
    assert enrichment_factor(flat, actives, 0.55) == pytest.approx(1.0)


def test_metrics_undefined_without_actives_and_bad_input_rejected() -> None:
    none = np.zeros(5, dtype=bool)
    scores = np.arange(5.0)
    assert math.isnan(enrichment_factor(scores, none, 0.5))
    assert math.isnan(bedroc(scores, none))
    assert math.isnan(auroc(scores, none))
    assert math.isnan(auroc(scores, ~none))  # no inactive: no pair to compare
    assert bedroc(scores, ~none) == 1.0  # as RDKit: RIEmax = RIEmin when all are active
    with pytest.raises(ValueError, match="NaN"):
        enrichment_factor(np.array([1.0, np.nan]), np.array([True, False]), 0.5)
    with pytest.raises(ValueError, match="one length"):
        auroc(np.arange(3.0), np.array([True, False]))
    with pytest.raises(ValueError, match="fraction"):
        enrichment_factor(scores, ~none, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        bedroc(scores, ~none, alpha=0.0)


def test_metrics_do_not_depend_on_input_order() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=300).astype(float)  # many ties, including at the cuts
    actives = rng.random(300) < 0.15
    before = [
        enrichment_factor(scores, actives, 0.01),
        enrichment_factor(scores, actives, 0.05),
        enrichment_factor(scores, actives, 0.33),
        bedroc(scores, actives),
        auroc(scores, actives),
    ]
    for seed in range(5):
        order = np.random.default_rng(seed + 1).permutation(300)
        s, a = scores[order], actives[order]
        after = [
            enrichment_factor(s, a, 0.01),
            enrichment_factor(s, a, 0.05),
            enrichment_factor(s, a, 0.33),
            bedroc(s, a),
            auroc(s, a),
        ]
        assert after == pytest.approx(before, rel=1e-12)
    # a stable sort would favour actives listed first among ties; the values must not
    first = np.argsort(~actives, kind="stable")
    last = np.argsort(actives, kind="stable")
    assert enrichment_factor(scores[first], actives[first], 0.05) == pytest.approx(
        enrichment_factor(scores[last], actives[last], 0.05)
    )


@pytest.mark.parametrize(
    ("n", "n_actives", "alpha", "seed"),
    [(50, 5, 20.0, 0), (400, 13, 20.0, 1), (30, 29, 5.0, 2), (1000, 40, 100.0, 3), (7, 1, 0.5, 4)],
)
def test_bedroc_matches_rdkit_without_ties(n: int, n_actives: int, alpha: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n).astype(float) + rng.random()  # distinct scores
    actives = np.zeros(n, dtype=bool)
    actives[rng.choice(n, n_actives, replace=False)] = True
    ranked = [[s, a] for s, a in sorted(zip(scores, actives), key=lambda p: -p[0])]  # RDKit wants best first
    assert bedroc(scores, actives, alpha) == pytest.approx(CalcBEDROC(ranked, 1, alpha), rel=1e-10)


def test_bedroc_hand_values() -> None:
    # alpha = 4 ln 2 with N = 4 makes e^{-alpha r / N} = 2^{-r}.
    alpha = 4 * math.log(2)
    # actives at ranks 1 and 3, A = 2, ratio Ra = 1/2:
    #   sum = 2^-1 + 2^-3 = 0.625
    #   random sum = (1/N)(1 - e^-alpha) / (e^{alpha/N} - 1) = (1/4)(1 - 1/16) / (2 - 1) = 0.234375
    #   RIE = 0.625 / (2 · 0.234375) = 4/3
    #   RIEmax = (1 - e^{-alpha Ra}) / (Ra (1 - e^-alpha)) = (1 - 1/4) / (1/2 · 15/16) = 1.6
    #   RIEmin = (1 - e^{alpha Ra}) / (Ra (1 - e^alpha)) = (1 - 4) / (1/2 · (1 - 16)) = 0.4
    #   BEDROC = (4/3 - 0.4) / (1.6 - 0.4) = (14/15) / (6/5) = 7/9
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    assert bedroc(scores, np.array([True, False, True, False]), alpha) == pytest.approx(7 / 9)
    # a tie: scores 4, 3, 3, 1 with the one active among the tied pair, average rank 2.5; A = 1, Ra = 1/4:
    #   RIE = 2^-2.5 / (1 · 0.234375)
    #   RIEmax = (1 - 2^-1) / (1/4 · 15/16) = 32/15; RIEmin = (1 - 2) / (1/4 · (1 - 16)) = 4/15
    #   BEDROC = (2^-2.5 / 0.234375 - 4/15) / (28/15)
    expected = (2**-2.5 / 0.234375 - 4 / 15) / (28 / 15)
    tied = np.array([4.0, 3.0, 3.0, 1.0])
    assert bedroc(tied, np.array([False, True, False, False]), alpha) == pytest.approx(expected)
    assert bedroc(tied, np.array([False, False, True, False]), alpha) == pytest.approx(expected)
    assert expected == pytest.approx(0.261204, abs=1e-6)


def test_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 5, size=200).astype(float)
    actives = rng.random(200) < (0.1 + scores / 8)  # higher scores more often active, so AUROC is not 0.5
    value = auroc(scores, actives)
    assert value == pytest.approx(roc_auc_score(actives, scores), rel=1e-12)
    assert value > 0.6
    # by hand: actives 3, 1; inactives 1, 0 -> pairs (3>1) 1, (3>0) 1, (1=1) 1/2, (1>0) 1 -> 3.5 / 4
    assert auroc(np.array([3.0, 1.0, 1.0, 0.0]), np.array([True, True, False, False])) == pytest.approx(0.875)


def _table() -> pd.DataFrame:
    # T2 first in the table, then T1; T3 has no active and T4 no inactive, so both are left out
    return pd.DataFrame(
        {
            "target_id": ["T2", "T1", "T3", "T2", "T1", "T3", "T4"] + ["T1"] * 8 + ["T2"] * 3,
            "logit": [0.5, 10.0, 1.0, 2.0, 9.0, 0.0, 1.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, -1.0, -2.0, 3.0],
            "active": [
                True,
                True,
                False,
                False,
                False,
                False,
                True,
                False,
                True,
                False,
                False,
                True,
                False,
                False,
                False,
                False,
                True,
                False,
            ],
        }
    )


def test_report_has_one_row_per_scorable_target_in_order_of_appearance() -> None:
    report = retrospective_report(_table())
    assert list(report.columns) == ["target_id", "molecules", "actives", "ef_1pct", "ef_5pct", "bedroc_20", "auroc"]
    assert report["target_id"].tolist() == ["T2", "T1"]
    assert report["molecules"].tolist() == [5, 10]
    assert report["actives"].tolist() == [2, 3]
    # T1: logits 10..1 with actives at ranks 1, 4, 7 (= SCORES / ACTIVES above).
    # EF 1 %: n = ceil(0.1) = 1 -> 10/3; EF 5 %: n = ceil(0.5) = 1 -> 10/3
    t1 = report.iloc[1]
    assert t1["ef_1pct"] == pytest.approx(10 / 3)
    assert t1["ef_5pct"] == pytest.approx(10 / 3)
    assert t1["bedroc_20"] == pytest.approx(bedroc(SCORES, ACTIVES, 20.0))
    assert t1["auroc"] == pytest.approx(auroc(SCORES, ACTIVES))
    # T2: logits 0.5 (active), 2, -1, -2 (active), 3 -> best is 3 (inactive): EF at n = 1 is 0
    t2 = report.iloc[0]
    assert t2["ef_1pct"] == 0.0
    # auroc by hand: active 0.5 beats -1 only (1 of 3), active -2 beats none: 1 / 6
    assert t2["auroc"] == pytest.approx(1 / 6)
    assert EF_FRACTIONS == (0.01, 0.05) and BEDROC_ALPHA == 20.0


def test_report_of_a_table_without_scorable_targets_is_empty_with_its_columns() -> None:
    table = pd.DataFrame({"target_id": ["T3", "T3"], "logit": [1.0, 0.0], "active": [False, False]})
    report = retrospective_report(table)
    assert report.empty
    assert list(report.columns) == ["target_id", "molecules", "actives", "ef_1pct", "ef_5pct", "bedroc_20", "auroc"]
    with pytest.raises(ValueError, match="lacks columns"):
        retrospective_report(table.drop(columns="logit"))


def test_enrichment_plot_is_a_decodable_png() -> None:
    png = enrichment_plot(_table())
    assert png.startswith(PNG_MAGIC)
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # something was drawn
