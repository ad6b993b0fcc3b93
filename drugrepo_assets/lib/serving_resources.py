"""Configurable resources of the serving code location: the registry's names and gates, the champion/challenger
gate, and drift settings."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from drugrepo_assets.lib.gates import GATING_CHECKS
from drugrepo_assets.lib.storage import InstanceHome, S3Endpoint
from drugrepo_assets.serving.registry import CHALLENGER_ALIAS, CHAMPION_ALIAS


class RegistrySettings(ConfigurableResource):
    """How checkpoints are registered: model name prefix, the served alias, the challenger stage, the gating checks.

    By default a version whose gates pass while a champion exists becomes the challenger: the gates say
    it is sound on its own, not that it beats the champion, which `champion_challenger` judges on the
    same test rows and on live traffic before it serves everyone.
    """

    model_prefix: str = Field(default="drugban", description="Registered model of dataset d: <prefix>-<d>.")
    alias: str = Field(default=CHAMPION_ALIAS, description="Alias served: given to a version whose gates all passed.")
    challenger_alias: str = Field(
        default=CHALLENGER_ALIAS, description="Alias of a version that passed its gates while a champion exists."
    )
    promote_directly: bool = Field(
        default=False,
        description="Move the served alias to every version whose gates pass, with no challenger stage.",
    )
    gating_checks: list[str] = Field(
        default=list(GATING_CHECKS), description="asset:check of every check that must pass before promotion."
    )


class ChallengerSettings(ConfigurableResource):
    """The champion/challenger gate: how the two are evaluated offline and what promotes the challenger.

    The rule (`serving.challenger.challenger_verdict`): the challenger's test AUROC is at least the
    champion's less ``auroc_tolerance``; once ``min_shadow_pairs`` shadow pairs were scored by both,
    their decisions agree on at least ``agreement_floor`` of them (``require_online``: hold the
    challenger until there are that many).
    """

    auroc_tolerance: float = Field(
        default=0.01, ge=0, le=1, description="How much lower the challenger's test AUROC may be than the champion's."
    )
    min_shadow_pairs: int = Field(
        default=200, ge=1, description="Shadow pairs (scored by both versions) that make the online agreement count."
    )
    agreement_floor: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Least share of shadow pairs whose decisions (each version at its own threshold) agree.",
    )
    require_online: bool = Field(
        default=False, description="Hold the challenger until min_shadow_pairs shadow pairs exist (no offline-only)."
    )
    max_eval_pairs: int | None = Field(
        default=5000, ge=2, description="Validation and test rows evaluated at most, sampled per label (None: all)."
    )
    seed: int = Field(default=0, description="Seed of the capped sample (the same rows for both versions).")
    device: str = Field(default="cpu", description="Torch device of the offline evaluation.")


class DriftSettings(S3Endpoint, InstanceHome):
    """Where the API's request logs are (a folder, or an ``s3://`` prefix on `S3Endpoint`'s endpoint) and how drift is judged."""

    request_log_dir: str | None = Field(
        default=None,
        description="Folder or s3:// prefix of the API's JSONL request logs (DRUGREPO_REQUEST_LOG_DIR of the API); "
        "default $DAGSTER_HOME/serving/requests.",
    )
    max_rows: int = Field(default=5000, ge=10, description="Rows sampled from each side at most.")
    drift_share: float = Field(default=0.5, gt=0, le=1, description="Share of drifted columns that means drift.")
    min_rows: int = Field(default=5, ge=2, description="Fewest rows on each side worth comparing.")
    seed: int = Field(default=0, description="Seed of the row sampling.")

    def resolved_request_log_dir(self) -> str:
        """The request-log folder or s3:// prefix in use."""
        if self.request_log_dir:
            return self.request_log_dir
        return str(self.instance_folder("serving", "request_log_dir") / "requests")
