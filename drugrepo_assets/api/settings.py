"""Every setting of the prediction API, read from the environment in one place (it is not a Dagster process)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_NAME = "drugban-human"
DEFAULT_ALIAS = "champion"


def default_request_log_dir() -> str:
    """``$DAGSTER_HOME/serving/requests`` when DAGSTER_HOME is set (where the drift report looks), else ``.drugrepo/requests``."""
    home = os.environ.get("DAGSTER_HOME")
    return str(Path(home) / "serving" / "requests") if home else ".drugrepo/requests"


class ServingSettings(BaseSettings):
    """The API's settings: ``DRUGREPO_*`` variables (and ``MLFLOW_TRACKING_URI``); CLI flags override the model source."""

    model_config = SettingsConfigDict(env_prefix="DRUGREPO_", extra="ignore", protected_namespaces=())

    api_keys: str = Field(default="", description="Comma-separated API keys accepted in X-API-Key.")
    rate_limit_per_minute: int = Field(default=600, ge=1, description="Requests per minute per API key.")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, description="Largest accepted request body (413 above).")
    redis_url: Optional[str] = Field(default=None, description="Redis for target terms and rate limits; in-process when unset.")
    cache_size: int = Field(default=256, ge=1, description="Targets kept by the in-process LRU cache.")
    cache_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=1, description="Lifetime of a target's terms in Redis.")
    request_log_dir: str = Field(default_factory=default_request_log_dir, description="Folder of the JSONL request logs.")
    checkpoint: Optional[str] = Field(default=None, description="Serve this checkpoint file instead of the registry.")
    model_uri: Optional[str] = Field(default=None, description="An MLflow model URI (default models:/<name>@<alias>).")
    model_name: str = Field(default=DEFAULT_MODEL_NAME, description="Registered model served by default.")
    model_alias: str = Field(default=DEFAULT_ALIAS, description="Registry alias served by default.")
    mlflow_tracking_uri: Optional[str] = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "DRUGREPO_MLFLOW_TRACKING_URI"),
        description="MLflow tracking server of the registry.",
    )
    model_refresh_seconds: float = Field(
        default=60.0, ge=0,
        description="Seconds between re-reads of the registry alias (0: never): a promotion or rollback is served without a restart.",
    )
    torch_threads: int = Field(default=1, ge=1, description="torch intra-op threads per request.")
    max_screen_smiles: int = Field(default=10_000, ge=1, description="Most SMILES in one /v1/screen request.")
    host: str = Field(default="127.0.0.1", description="Address uvicorn binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port uvicorn binds.")

    def keys(self) -> list[str]:
        """The accepted API keys (empty entries dropped)."""
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    def resolved_model_uri(self) -> str:
        """The registry URI to load when no checkpoint file is given."""
        return self.model_uri or f"models:/{self.model_name}@{self.model_alias}"

    def follows_alias(self) -> bool:
        """Whether the API re-reads a registry alias while it runs (no checkpoint file, an ``@alias`` URI, refresh on)."""
        return not self.checkpoint and "@" in self.resolved_model_uri() and self.model_refresh_seconds > 0
