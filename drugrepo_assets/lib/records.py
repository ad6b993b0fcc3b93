"""Typed values of the assets read across stages and code locations: the checkpoint, its evaluation, the
registered model, the champion/challenger comparison, the drift report and the HPO study.

The JSON I/O manager stores a record as ``model_dump(mode="json")`` (plain, indented JSON: these fields)
and validates an input annotated with a record class back into it; an input annotated ``dict`` still
gets the plain JSON. Non-finite floats (a diverged epoch's NaN loss) are stored as JSON's ``NaN`` /
``Infinity``, not ``null``, so that they survive the round trip and the checks still see them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from drugrepo_assets.ml.evaluate import BinaryMetrics
from drugrepo_assets.ml.training.train_config import EpochRecord

__all__ = [
    "ChallengerRecord",
    "CheckpointRecord",
    "ColumnDrift",
    "DriftReport",
    "DriftSummary",
    "EvaluationRecord",
    "HpoSlot",
    "HpoSummary",
    "HpoTrialOutcome",
    "OnlineComparison",
    "Record",
    "RegisteredModelRecord",
    "VersionMetrics",
]


class Record(BaseModel):
    """Base of the stored records: NaN and infinities kept as such; fields a record no longer has are ignored."""

    model_config = ConfigDict(ser_json_inf_nan="constants", extra="ignore")


class CheckpointRecord(Record):
    """The value of `drugban_checkpoint`: where the best epoch's file is, its id, how it was trained, its run."""

    checkpoint: str = Field(description="URI of best.pt under the storage.")
    checkpoint_id: str = Field(description="`ml.model.checkpoint.checkpoint_id` of the file's weights.")
    domain_reference: str | None = Field(
        default=None, description="URI of its training drugs and targets (`screening.domain.reference_path`)."
    )
    dataset: str
    strategy: str = Field(description="The split strategy trained on.")
    profile: str = Field(description="The training profile's name.")
    seed: int
    max_eval_pairs: int | None = Field(description="Cap on validation and test pairs (None: all).")
    train_pairs: int
    val_pairs: int
    best_epoch: int
    best_val_auroc: float
    device: str
    wall_seconds: float
    stopped_early: bool
    history: list[EpochRecord]
    hpo_params: dict[str, Any] = Field(description="The study's parameters trained with (empty: the profile's).")
    mlflow_run_id: str
    mlflow_experiment_id: str
    mlflow_run_url: str
    dagster_run_id: str

    @classmethod
    def imported(cls, checkpoint: str, checkpoint_id: str, dataset: str, profile: str) -> CheckpointRecord:
        """The record of a checkpoint trained elsewhere (no run, no history): what the stages downstream
        of training need to read its file."""
        return cls(
            checkpoint=checkpoint,
            checkpoint_id=checkpoint_id,
            dataset=dataset,
            strategy="random",
            profile=profile,
            seed=0,
            max_eval_pairs=None,
            train_pairs=0,
            val_pairs=0,
            best_epoch=0,
            best_val_auroc=float("nan"),
            device="cpu",
            wall_seconds=0.0,
            stopped_early=False,
            history=[],
            hpo_params={},
            mlflow_run_id="",
            mlflow_experiment_id="",
            mlflow_run_url="",
            dagster_run_id="",
        )


class EvaluationRecord(Record):
    """The value of `model_evaluation`: metrics of one checkpoint at the probability threshold chosen on validation."""

    checkpoint: str
    checkpoint_id: str
    threshold: float = Field(description="Probability threshold, F1-optimal on validation, applied unchanged to test.")
    val: BinaryMetrics
    test: BinaryMetrics
    pictures: dict[str, str] = Field(description="URI of each picture (curves, attention maps) by file name.")
    mlflow_run_url: str


class RegisteredModelRecord(Record):
    """The value of `registered_model`: the registry version of a checkpoint and what the gates decided."""

    name: str
    version: str
    created: bool = Field(description="Whether this materialisation created the version.")
    source: str = Field(description="Artifact URI the version was registered from.")
    checkpoint: str
    checkpoint_id: str
    alias: str
    champion_version: str | None = Field(description="The version the alias names after this materialisation.")
    promoted: bool = Field(description="The alias names this version (every gate passed, and no challenger stage).")
    decision: str
    challenger_alias: str = Field(default="challenger", description="Alias of a version waiting for its comparison.")
    challenger_version: str | None = Field(
        default=None, description="The version the challenger alias names after this materialisation."
    )
    gates: dict[str, str] = Field(description="State of each gating check (passed, failed, not run, planned, stale).")
    model_uri: str


class ColumnDrift(Record):
    """One column's drift test: its method, score (p-value or distance), threshold and verdict."""

    method: str
    score: float
    threshold: float
    drifted: bool


class DriftSummary(Record):
    """The outcome of one reference-vs-current comparison."""

    name: str
    reference_rows: int
    current_rows: int
    drift_share: float
    share_drifted: float = 0.0
    dataset_drift: bool = False
    columns: dict[str, ColumnDrift] = Field(default_factory=dict)
    note: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def drifted_columns(self) -> list[str]:
        """Names of the columns whose test says drift."""
        return [name for name, c in self.columns.items() if c.drifted]


class DriftReport(Record):
    """The value of `drift_report`: each comparison's summary and the HTML reports written."""

    dataset: str
    strategy: str
    checkpoint: str
    checkpoint_id: str
    created: str = Field(description="When the report was made (ISO 8601, UTC).")
    comparisons: dict[str, DriftSummary]
    reports: dict[str, str] = Field(description="URI of each comparison's Evidently HTML report.")
    drifted: list[str] = Field(description="The comparisons whose data drifted.")


class VersionMetrics(Record):
    """Test metrics of one registry version on the comparison's split, at its own validation threshold."""

    version: str
    checkpoint_id: str
    strategy: str = Field(description="The split strategy the version was trained on.")
    threshold: float = Field(description="Probability threshold, F1-optimal on the comparison's validation rows.")
    test: BinaryMetrics


class OnlineComparison(Record):
    """The champion and the challenger on live traffic, from the API's request log."""

    requests: dict[str, int] = Field(description="Distinct requests per role (champion, challenger, shadow).")
    pairs: dict[str, int] = Field(description="Scored pairs per role.")
    shadow_pairs: int = Field(description="Pairs scored by both: shadow records joined to the champion's.")
    mean_abs_score_diff: float | None = Field(description="Mean |challenger score - champion score| over shadow pairs.")
    decision_disagreement: float | None = Field(
        description="Share of shadow pairs whose decisions differ, each version at its own threshold."
    )
    spearman: float | None = Field(description="Spearman rank correlation of the two scores over shadow pairs.")
    score_drift: DriftSummary = Field(description="The challenger's scores against the champion's (all its records).")


class ChallengerRecord(Record):
    """The value of `champion_challenger`: both versions compared offline and online, and what the gate decided."""

    name: str
    dataset: str
    created: str = Field(description="When the comparison was made (ISO 8601, UTC).")
    champion_version: str | None = Field(description="The champion compared (before any promotion).")
    challenger_version: str | None = Field(description="The challenger compared (None: there was none).")
    split: str = Field(default="", description="The rows both were evaluated on: <strategy>/test, capped and seeded.")
    champion: VersionMetrics | None = None
    challenger: VersionMetrics | None = None
    online: OnlineComparison | None = None
    decision: str = Field(description="promoted, held, or no challenger.")
    reasons: list[str] = Field(description="Why the challenger was held; on promotion, what it passed.")
    promoted: bool
    champion_after: str | None = Field(description="The version the champion alias names after the decision.")


class HpoSlot(Record):
    """One trial slot handed to an `hpo_trial` op."""

    study: str
    strategy: str
    parent_run_id: str
    slot: int


class HpoTrialOutcome(Record):
    """What one Optuna trial did: its state (COMPLETE, PRUNED, FAIL), best val AUROC and parameters."""

    study: str
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    mlflow_run_url: str


class HpoSummary(Record):
    """The value of `hpo_study`: the study after this materialisation's trials."""

    study: str
    storage: str = Field(description="The Optuna storage URL, password hidden.")
    states: dict[str, int] = Field(description="Trials of the whole study by state.")
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    this_run: list[HpoTrialOutcome]
