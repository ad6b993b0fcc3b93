"""Every setting of the prediction API, read from the environment in one place (it is not a Dagster process)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from drugrepo_assets.data.rules import MOLECULE_CPU_SECONDS, MOLECULE_MEMORY_BYTES

DEFAULT_MODEL_NAME = "drugban-human"
DEFAULT_ALIAS = "champion"
MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


def default_request_log_dir() -> str:
    """``$DAGSTER_HOME/serving/requests`` when DAGSTER_HOME is set (where the drift report looks), else ``.drugrepo/requests``."""
    home = os.environ.get("DAGSTER_HOME")
    return str(Path(home) / "serving" / "requests") if home else ".drugrepo/requests"


class ServingSettings(BaseSettings):
    """The API's settings: ``DRUGREPO_*`` variables (and ``MLFLOW_TRACKING_URI``); CLI flags override the model source."""

    model_config = SettingsConfigDict(env_prefix="DRUGREPO_", extra="ignore", protected_namespaces=())

    api_keys: str = Field(default="", description="Comma-separated API keys accepted in X-API-Key.")
    rate_limit_per_minute: float = Field(
        default=6000,
        gt=0,
        description="Cost units per minute per API key (429 above): a request costs 1, plus 1 per pair or SMILES and "
        "protein_cost per distinct protein once its body is read.",
    )
    rate_limit_burst: float = Field(
        default=1000,
        ge=1,
        description="Cost units a key may spend at once above the steady rate; a request is admitted while the key's "
        "debt is under it and then charged in full (GCRA).",
    )
    protein_cost: float = Field(default=20, ge=0, description="Cost units of each distinct protein of a request.")
    ip_rate_limit_per_minute: float = Field(
        default=3000,
        gt=0,
        description="Requests without a valid key per minute per client address to /v1/ (429 above; keyed requests are limited per key).",
    )
    ip_rate_limit_burst: float = Field(
        default=300, ge=1, description="Requests without a valid key a client address may send at once above its rate."
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, description="Largest accepted request body (413 above).")
    max_pairs_per_request: int = Field(
        default=1000, ge=1, description="Most pairs in one /v1/predict request (413 above)."
    )
    max_proteins_per_request: int = Field(
        default=64,
        ge=1,
        description="Most distinct proteins in one /v1/predict request (413 above).",
    )
    max_smiles_chars_per_request: int = Field(
        default=600_000,
        ge=1,
        description="Most characters of distinct SMILES in one request, summed (413 above).",
    )
    max_listed_problems: int = Field(
        default=100,
        ge=1,
        description="Most problems listed in a 422 body (error_count gives the total).",
    )
    workers: int = Field(default=2, ge=1, description="Threads that parse and score requests (the bounded pool).")
    max_queued: int = Field(
        default=8,
        ge=0,
        description="Requests waiting for a worker; more at once are refused with 503 and Retry-After.",
    )
    redis_url: str | None = Field(
        default=None, description="Redis for target terms and rate limits; in-process when unset."
    )
    redis_timeout_seconds: float = Field(
        default=0.25,
        gt=0,
        description="Socket connect and read timeout of every Redis call.",
    )
    redis_retry_seconds: float = Field(
        default=5.0,
        ge=0,
        description="After a Redis failure, serve from the in-process cache and limiter this long before trying Redis again.",
    )
    cache_size: int = Field(default=256, ge=1, description="Targets kept by the in-process LRU cache.")
    cache_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=1, description="Lifetime of a target's terms in Redis.")
    target_terms: str | None = Field(
        default=None,
        description="Folder or s3:// prefix of the target-terms store drugrepo screen --target-terms fills "
        "(screening.terms): on a cache miss a target's terms are read from it, else computed and written there, "
        "so replicas warm each other; the S3 endpoint is AWS_ENDPOINT_URL_S3's. Unset: computed.",
    )
    target_terms_write_mib: int = Field(
        default=1024,
        ge=0,
        description="Most MiB of target terms one replica writes to the target-terms store (1.2 MB a target at the "
        "reference width); past it a new target's terms are computed and not stored (counted, kind budget), so "
        "requests for ever new sequences cannot fill the store. 0: the replica only reads the store.",
    )
    request_log_dir: str = Field(
        default_factory=default_request_log_dir,
        description="Folder or s3:// prefix of the JSONL request logs (one file, or one object per flush, per replica).",
    )
    request_log_max_queued_pairs: int = Field(
        default=50_000,
        ge=1,
        description="Pairs waiting for the request-log writer; a request beyond it is answered but not logged (counted).",
    )
    checkpoint: str | None = Field(default=None, description="Serve this checkpoint file instead of the registry.")
    model_uri: str | None = Field(default=None, description="An MLflow model URI (default models:/<name>@<alias>).")
    model_name: str = Field(default=DEFAULT_MODEL_NAME, description="Registered model served by default.")
    model_alias: str = Field(default=DEFAULT_ALIAS, description="Registry alias served by default.")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "DRUGREPO_MLFLOW_TRACKING_URI"),
        description="MLflow tracking server of the registry.",
    )
    model_refresh_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between re-reads of the registry alias (0: never): a promotion or rollback is served without a restart.",
    )
    challenger_alias: str | None = Field(
        default=None,
        description="Registry alias of a challenger served beside the champion (models:/<name>@<alias>, the "
        "champion's registered name), followed like the champion.",
    )
    challenger_checkpoint: str | None = Field(
        default=None, description="A checkpoint file served as the challenger instead of a registry alias."
    )
    challenger_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of requests that reach the challenger: answered by it (split) or copied to it (shadow).",
    )
    challenger_mode: Literal["split", "shadow"] = Field(
        default="split",
        description="split: the challenger answers its share of requests; shadow: the champion answers every "
        "request and the challenger scores a copy off the answer path (log and metrics only).",
    )
    challenger_seed: int | None = Field(
        default=None, description="Seed of the per-request challenger draw (unset: from the system's randomness)."
    )
    shadow_max_queued: int = Field(
        default=64,
        ge=1,
        description="Shadow copies waiting for the challenger; more are dropped and counted (the answers never wait).",
    )
    torch_threads: int = Field(default=1, ge=1, description="torch intra-op threads per worker.")
    molecule_workers: int = Field(
        default=2,
        ge=1,
        description="Processes that parse and featurise the requests' SMILES with RDKit (api/molecules.py), one "
        "molecule at a time within the budget below; the request log's descriptors have one more of their own.",
    )
    molecule_cpu_seconds: float = Field(
        default=MOLECULE_CPU_SECONDS,
        gt=0,
        description="CPU seconds RDKit may spend on one molecule of a request; over it the molecule is refused "
        "(422, over_budget) and the request log writes it without descriptors. The CLI's commands read the same "
        "variables (data.sandbox.BUDGET_VARIABLES).",
    )
    molecule_memory_mb: float = Field(
        default=MOLECULE_MEMORY_BYTES / 2**20,
        ge=1,
        description="Memory (MiB) RDKit may take for one molecule above its worker's own size; over it, as over time.",
    )
    max_screen_smiles: int = Field(default=10_000, ge=1, description="Most SMILES in one /v1/screen request.")
    host: str = Field(default="127.0.0.1", description="Address uvicorn binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port uvicorn binds.")
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A request's headers must arrive within this many seconds of the connection or of the request's "
        "first byte; else 408 and the connection is closed (slow clients, api/deadlines.py).",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A request's body must arrive within this many seconds of its headers (time the server is not "
        "reading is not counted); else 408 and the connection is closed.",
    )
    max_connections: int = Field(
        default=2048,
        ge=1,
        description="Open connections (or running requests) at which a new request is answered 503 at once "
        "(uvicorn's limit_concurrency).",
    )
    cache_max_bytes: int = Field(
        default=512 * 2**20,
        ge=1,
        description="Bytes of target terms the in-process LRU cache holds at most, besides its DRUGREPO_CACHE_SIZE "
        "entries (a target is 2.4 MB at DrugBAN's sizes, 4.7 MB with the C kernel's packed copy).",
    )

    @model_validator(mode="after")
    def _one_challenger(self) -> ServingSettings:
        if self.challenger_alias and self.challenger_checkpoint:
            raise ValueError("set DRUGREPO_CHALLENGER_ALIAS or DRUGREPO_CHALLENGER_CHECKPOINT, not both")
        return self

    def keys(self) -> list[str]:
        """The accepted API keys (empty entries dropped)."""
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    def resolved_model_uri(self) -> str:
        """The registry URI to load when no checkpoint file is given."""
        return self.model_uri or f"models:/{self.model_name}@{self.model_alias}"

    def challenger_uri(self) -> str | None:
        """The challenger's registry URI, ``models:/<name>@<challenger_alias>`` with the champion's registered name."""
        if not self.challenger_alias:
            return None
        match = MODELS_URI.match(self.model_uri or "")
        return f"models:/{match['name'] if match else self.model_name}@{self.challenger_alias}"

    def has_challenger(self) -> bool:
        """Whether a challenger is configured (an alias or a file)."""
        return bool(self.challenger_alias or self.challenger_checkpoint)

    def follows_alias(self) -> bool:
        """Whether the API re-reads a registry alias while it runs (no checkpoint file, an ``@alias`` URI, refresh on)."""
        return not self.checkpoint and "@" in self.resolved_model_uri() and self.model_refresh_seconds > 0

    def follows_challenger(self) -> bool:
        """Whether the API re-reads the challenger's alias while it runs (an alias configured, refresh on)."""
        return bool(self.challenger_alias) and self.model_refresh_seconds > 0
