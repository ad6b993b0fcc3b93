"""The champion/challenger comparison without services: the online figures from a request log written by
`RequestLog` in the API's format (roles, request ids, pair positions), and the gate rule case by case."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drugrepo_assets.api.request_log import LoggedBatch, RequestLog
from drugrepo_assets.lib.records import DriftSummary, OnlineComparison, VersionMetrics
from drugrepo_assets.lib.serving_resources import ChallengerSettings
from drugrepo_assets.ml.evaluate import BinaryMetrics
from drugrepo_assets.request_records import RequestRecord, scan_request_log
from drugrepo_assets.serving.challenger import challenger_verdict, online_comparison, spearman
from drugrepo_assets.serving.drift import compare

NAME = "drugban-human"
PROTEIN = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
SMILES = ["CCO", "CC(=O)Oc1ccccc1C(=O)O", "c1ccccc1", "CCN(CC)CC"]


def _metrics(version: str, auroc: float, threshold: float = 0.5, strategy: str = "random") -> VersionMetrics:
    test = BinaryMetrics(auroc, 0.5, threshold, 0.5, 0.5, 0.5, 0.5, 0.5, 100, 50)
    return VersionMetrics(
        version=version, checkpoint_id=f"id{version}", strategy=strategy, threshold=threshold, test=test
    )


def _batch(
    version: str, role: str, request_id: str, scores: list[float], pairs: list[int] | None = None
) -> LoggedBatch:
    n = len(scores)
    smiles = [SMILES[i % len(SMILES)] for i in (pairs if pairs is not None else range(n))]
    logits = [float(np.log(s / (1 - s))) for s in scores]
    return LoggedBatch(
        "/v1/predict", "key", f"{NAME}/{version}", f"id{version}", smiles, [PROTEIN] * n, logits, scores,
        role, request_id, pairs,
    )  # fmt: skip


def _write(folder: Path, batches: list[LoggedBatch]) -> list[RequestRecord]:
    log = RequestLog(folder)
    for batch in batches:
        assert log.submit(batch)
    log.close()
    return scan_request_log(folder).records


def test_online_comparison_joins_shadow_records_to_the_champions_by_request_and_pair(tmp_path: Path) -> None:
    records = _write(
        tmp_path,
        [
            _batch("1", "champion", "r1", [0.1, 0.4, 0.6, 0.9]),
            _batch("2", "shadow", "r1", [0.2, 0.45, 0.4, 0.95]),
            _batch("2", "challenger", "r2", [0.7, 0.3]),
            _batch("1", "champion", "r3", [0.8, 0.2]),
            _batch("2", "shadow", "r3", [0.25], pairs=[1]),  # only the second pair was copied: one shadow pair
            _batch("2", "shadow", "r4", [0.5]),  # the champion's record of r4 was lost: nothing to join
            _batch("3", "champion", "r5", [0.99]),  # another version of the model
        ],
    )
    records.append(
        RequestRecord.from_json_line(json.dumps({"model_version": f"{NAME}/1", "score": 0.3}))
    )  # no roles yet
    records.append(
        RequestRecord(model_version="drugban-biosnap/1", role="champion", request_id="r1", pair=0, score=1.0)
    )
    online, _ = online_comparison(records, NAME, _metrics("1", 0.8), _metrics("2", 0.8))
    assert online.requests == {"champion": 2, "challenger": 1, "shadow": 3}
    assert online.pairs == {"champion": 7, "challenger": 2, "shadow": 6}
    assert online.shadow_pairs == 5
    # r1: |Δ| 0.1, 0.05, 0.2, 0.05; r3 pair 1: 0.05. Decisions at 0.5 differ on r1's third pair only.
    assert online.mean_abs_score_diff == pytest.approx(0.45 / 5)
    assert online.decision_disagreement == pytest.approx(1 / 5)
    assert online.spearman == pytest.approx(
        spearman(np.array([0.1, 0.4, 0.6, 0.9, 0.2]), np.array([0.2, 0.45, 0.4, 0.95, 0.25]))
    )
    assert online.score_drift.current_rows == 8 and online.score_drift.reference_rows == 7


def test_decisions_use_each_versions_own_threshold(tmp_path: Path) -> None:
    records = _write(tmp_path, [_batch("1", "champion", "r1", [0.3, 0.6]), _batch("2", "shadow", "r1", [0.3, 0.6])])
    same, _ = online_comparison(records, NAME, _metrics("1", 0.8, threshold=0.5), _metrics("2", 0.8, threshold=0.5))
    shifted, _ = online_comparison(records, NAME, _metrics("1", 0.8, threshold=0.5), _metrics("2", 0.8, threshold=0.2))
    assert same.decision_disagreement == 0.0 and same.mean_abs_score_diff == pytest.approx(0.0)
    assert shifted.decision_disagreement == pytest.approx(0.5)


def test_spearman_is_the_rank_correlation_and_none_without_ranks() -> None:
    assert spearman(np.array([0.1, 0.4, 0.6, 0.9]), np.array([0.2, 0.45, 0.4, 0.95])) == pytest.approx(0.8)
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([30.0, 20.0, 10.0])) == pytest.approx(-1.0)
    assert spearman(np.array([0.5]), np.array([0.5])) is None
    assert spearman(np.array([0.5, 0.5]), np.array([0.1, 0.2])) is None


def test_score_drift_tells_a_shifted_challenger_from_a_like_one() -> None:
    rng = np.random.default_rng(0)
    champion = pd.DataFrame({"score": rng.uniform(0.0, 0.6, 300)})
    like, _ = compare("scores", champion, pd.DataFrame({"score": rng.uniform(0.0, 0.6, 300)}), columns=("score",))
    shifted, html = compare("scores", champion, pd.DataFrame({"score": rng.uniform(0.4, 1.0, 300)}), columns=("score",))
    assert not like.dataset_drift and like.drifted_columns == []
    assert shifted.dataset_drift and shifted.drifted_columns == ["score"] and html is not None


def _online(shadow_pairs: int, disagreement: float | None) -> OnlineComparison:
    return OnlineComparison(
        requests={},
        pairs={},
        shadow_pairs=shadow_pairs,
        mean_abs_score_diff=None,
        decision_disagreement=disagreement,
        spearman=None,
        score_drift=DriftSummary(name="challenger_scores", reference_rows=0, current_rows=0, drift_share=0.5),
    )


@pytest.mark.parametrize(
    ("challenger_auroc", "online", "settings", "promote", "failed"),
    [
        (0.80, _online(0, None), ChallengerSettings(), True, []),
        (0.795, _online(0, None), ChallengerSettings(), True, []),
        (0.785, _online(0, None), ChallengerSettings(), False, ["test AUROC 0.7850 vs champion 0.8000 - 0.01"]),
        (0.80, _online(0, None), ChallengerSettings(require_online=True), False, ["0 shadow pairs of the 200 needed"]),
        (0.80, _online(199, 0.5), ChallengerSettings(), True, []),
        (0.80, _online(200, 0.15), ChallengerSettings(require_online=True), True, []),
        (0.80, _online(200, 0.25), ChallengerSettings(), False, ["decisions agree on 75.0% of 200 shadow pairs"]),
        (0.70, _online(500, 0.5), ChallengerSettings(), False, ["test AUROC", "decisions agree on 50.0% of 500"]),
    ],
)
def test_the_gate_promotes_only_a_challenger_not_worse(
    challenger_auroc: float, online: OnlineComparison, settings: ChallengerSettings, promote: bool, failed: list[str]
) -> None:
    verdict = challenger_verdict(_metrics("1", 0.80), _metrics("2", challenger_auroc), online, settings)
    assert verdict.promote is promote
    assert len(verdict.failed) == len(failed)
    for line, expected in zip(verdict.failed, failed):
        assert line.startswith(expected)
    assert len(verdict.passed) + len(verdict.failed) == 2


def test_the_gate_refuses_versions_trained_on_different_strategies() -> None:
    verdict = challenger_verdict(
        _metrics("1", 0.80, strategy="cold_drug"), _metrics("2", 0.90), _online(0, None), ChallengerSettings()
    )
    assert not verdict.promote and verdict.failed[0].startswith("trained on different split strategies")


def test_no_traffic_yet_gives_empty_online_figures() -> None:
    online, html = online_comparison([], NAME, _metrics("1", 0.8), _metrics("2", 0.8))
    assert online.requests == online.pairs == {"champion": 0, "challenger": 0, "shadow": 0}
    assert online.shadow_pairs == 0 and html is None
    assert (online.mean_abs_score_diff, online.decision_disagreement, online.spearman) == (None, None, None)
    assert online.score_drift.note.startswith("too few rows to compare")
