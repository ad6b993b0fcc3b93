"""Champion against challenger, without Dagster: both registry versions on the same test rows, both on the
API's live traffic, and the one rule that says whether the challenger may replace the champion.

Offline, each version is scored by `ml.training.pipeline.evaluate_model` on the same validation and test rows
(the challenger's split strategy, capped and seeded alike), each at its own validation threshold. When
the splits changed since the champion was trained (new data), some of those test rows may have been
among its training rows, which favours the champion: the gate then errs towards keeping it.

Online, from the request log (`request_records.RequestRecord`: every record names its ``model_version``, ``role`` and
``request_id``, and its position ``pair`` in the request): requests and pairs per role; the shadow pairs,
a shadow record joined to the champion's record of the same request and pair, give the mean absolute
score difference, the share of decisions that differ and the Spearman rank correlation; every score
the challenger gave (shadow or answered) is compared with the champion's for drift (`drift.compare`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from drugrepo_assets.lib.records import OnlineComparison, VersionMetrics
from drugrepo_assets.lib.serving_resources import ChallengerSettings
from drugrepo_assets.ml.features.dataset import PairData
from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.ml.training.pipeline import evaluate_model
from drugrepo_assets.request_records import CHALLENGER, CHAMPION, ROLES, SHADOW, RequestRecord
from drugrepo_assets.serving.drift import compare

PAIR_KEYS: tuple[str, ...] = ("request_id", "pair")
"""Fields of a request-log record that join a shadow record to the champion's record of the same pair."""
SCORE_DRIFT = "challenger_scores"


def offline_metrics(
    model: DrugBAN,
    version: str,
    checkpoint_id: str,
    strategy: str,
    val: PairData,
    test: PairData,
    device: str | torch.device = "cpu",
) -> VersionMetrics:
    """One version's test metrics on the comparison's rows, at the threshold chosen on its validation rows."""
    evaluation = evaluate_model(model, val, test, device)
    return VersionMetrics(
        version=version,
        checkpoint_id=checkpoint_id,
        strategy=strategy,
        threshold=evaluation.threshold,
        test=evaluation.metrics.test,
    )


def version_records(records: Iterable[RequestRecord], model_version: str, roles: Sequence[str]) -> pd.DataFrame:
    """The request-log records of one served version in ``roles`` that carry a score: role, score and pair keys."""
    columns = ["role", "score", *PAIR_KEYS]
    rows = [
        {"role": r.role, "score": r.score, "request_id": r.request_id, "pair": r.pair}
        for r in records
        if r.model_version == model_version and r.role in roles and r.has_score()
    ]
    return pd.DataFrame(rows, columns=columns).astype({"score": float})


def _keyed(frame: pd.DataFrame, role: str) -> pd.DataFrame:
    """The records of ``role`` that name their request and pair, one per request and pair."""
    keys = list(PAIR_KEYS)
    rows = frame[(frame["role"] == role) & frame[keys].notna().all(axis=1) & (frame["request_id"] != "")]
    return rows.drop_duplicates(keys)


def shadow_pairs(champion: pd.DataFrame, challenger: pd.DataFrame) -> pd.DataFrame:
    """Pairs scored by both: ``champion`` and ``challenger`` score columns, one row per request and pair."""
    keys = list(PAIR_KEYS)
    answered, shadow = _keyed(champion, CHAMPION), _keyed(challenger, SHADOW)
    joined = answered[[*keys, "score"]].merge(shadow[[*keys, "score"]], on=keys, suffixes=("_champion", "_challenger"))
    return joined.rename(columns={"score_champion": CHAMPION, "score_challenger": CHALLENGER})


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation (average ranks for ties); None with fewer than two pairs or a constant side."""
    if len(a) < 2:
        return None
    ranks_a, ranks_b = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if np.ptp(ranks_a) == 0 or np.ptp(ranks_b) == 0:
        return None
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def _per_role(frames: Sequence[pd.DataFrame]) -> tuple[dict[str, int], dict[str, int]]:
    both = pd.concat(frames, ignore_index=True)
    named = both[both["request_id"].notna() & (both["request_id"] != "")]
    requests = {role: int(named.loc[named["role"] == role, "request_id"].nunique()) for role in ROLES}
    pairs = {role: int((both["role"] == role).sum()) for role in ROLES}
    return requests, pairs


def online_comparison(
    records: Sequence[RequestRecord],
    name: str,
    champion: VersionMetrics,
    challenger: VersionMetrics,
    drift_share: float = 0.5,
    min_rows: int = 5,
) -> tuple[OnlineComparison, str | None]:
    """The two versions of registered model ``name`` on live traffic: (comparison, score-drift HTML or None)."""
    answered = version_records(records, f"{name}/{champion.version}", [CHAMPION])
    scored = version_records(records, f"{name}/{challenger.version}", [CHALLENGER, SHADOW])
    requests, pairs = _per_role([answered, scored])
    joined = shadow_pairs(answered, scored)
    a, b = joined[CHAMPION].to_numpy(), joined[CHALLENGER].to_numpy()
    differ = (a >= champion.threshold) != (b >= challenger.threshold)
    drift, html = compare(
        SCORE_DRIFT, answered[["score"]], scored[["score"]], drift_share, min_rows, columns=("score",)
    )
    comparison = OnlineComparison(
        requests=requests,
        pairs=pairs,
        shadow_pairs=len(joined),
        mean_abs_score_diff=float(np.abs(a - b).mean()) if len(joined) else None,
        decision_disagreement=float(differ.mean()) if len(joined) else None,
        spearman=spearman(a, b),
        score_drift=drift,
    )
    return comparison, html


@dataclass(frozen=True)
class Verdict:
    """What the gate decided: promote or not, the rules failed and the rules passed (or not judged), in words."""

    promote: bool
    failed: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)


def challenger_verdict(
    champion: VersionMetrics, challenger: VersionMetrics, online: OnlineComparison, settings: ChallengerSettings
) -> Verdict:
    """The champion/challenger gate: promote only a challenger not worse than the champion (see `ChallengerSettings`)."""
    failed: list[str] = []
    passed: list[str] = []
    if champion.strategy != challenger.strategy:
        failed.append(
            f"trained on different split strategies (champion {champion.strategy}, challenger "
            f"{challenger.strategy}): one's test rows are the other's training rows"
        )
    floor = champion.test.auroc - settings.auroc_tolerance
    auroc = f"test AUROC {challenger.test.auroc:.4f} vs champion {champion.test.auroc:.4f} - {settings.auroc_tolerance}"
    (passed if challenger.test.auroc >= floor else failed).append(auroc)
    n, needed = online.shadow_pairs, settings.min_shadow_pairs
    if n >= needed and online.decision_disagreement is not None:
        agreement = 1.0 - online.decision_disagreement
        line = f"decisions agree on {agreement:.1%} of {n} shadow pairs (floor {settings.agreement_floor:.1%})"
        (passed if agreement >= settings.agreement_floor else failed).append(line)
    elif settings.require_online:
        failed.append(f"{n} shadow pairs of the {needed} needed to judge agreement")
    else:
        passed.append(f"agreement not judged: {n} shadow pairs of the {needed} needed")
    return Verdict(not failed, failed, passed)
