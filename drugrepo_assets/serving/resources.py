"""Configurable resources of the serving code location: the registry's names and gates, and drift settings."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from drugrepo_assets.serving.gates import GATING_CHECKS
from drugrepo_assets.storage import S3Endpoint


class RegistrySettings(ConfigurableResource):
    """How checkpoints are registered: model name prefix, the alias that is served, the gating checks."""

    model_prefix: str = Field(default="drugban", description="Registered model of dataset d: <prefix>-<d>.")
    alias: str = Field(default="champion", description="Alias moved to a version whose gates all passed.")
    gating_checks: list[str] = Field(
        default=list(GATING_CHECKS), description="asset:check of every check that must pass before promotion."
    )


class DriftSettings(S3Endpoint, ConfigurableResource):
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
    _home: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Remember the instance folder for the default request-log folder."""
        if context.instance is not None:
            self._home = context.instance.root_directory

    def resolved_request_log_dir(self) -> str:
        """The request-log folder or s3:// prefix in use."""
        if self.request_log_dir:
            return self.request_log_dir
        if self._home is None:
            raise ValueError("DriftSettings needs request_log_dir when no Dagster instance is at hand")
        return str(Path(self._home) / "serving" / "requests")
