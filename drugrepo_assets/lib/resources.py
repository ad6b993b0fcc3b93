"""Configurable resources of the asset code location: data source, splits, training profile, MLflow
tracking and the Optuna storage (files of file-valued assets: `drugrepo_assets.lib.storage.StorageResource`)."""

from __future__ import annotations

import fcntl
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from dagster import ConfigurableResource, OpExecutionContext
from pydantic import Field

from drugrepo_assets.data.sources import dataset_location, read_source
from drugrepo_assets.lib.storage import InstanceHome, S3Endpoint
from drugrepo_assets.location import Location
from drugrepo_assets.ml.model.model_config import DrugBANConfig
from drugrepo_assets.ml.training.train_config import CDANConfig, TrainConfig
from drugrepo_assets.screening.plan import BLOCK_SIZE, SHARD_SIZE

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient


class DataSourceResource(S3Endpoint, ConfigurableResource):
    """Where `raw_pairs` reads each dataset partition from.

    `root` is ``"bundled"`` (the benchmark sample shipped in the package), a local folder, an
    http(s) URL prefix or an ``s3://`` prefix (on `S3Endpoint`'s endpoint); a partition reads
    ``<root>/<dataset>``.
    """

    root: str = Field(
        default="bundled",
        description='"bundled", a local folder, an http(s) URL prefix or an s3:// prefix; '
        "each dataset partition is read from <root>/<dataset>.",
    )

    def location(self, dataset: str) -> str:
        """The file, folder, URL or S3 prefix that holds one dataset partition."""
        return dataset_location(self.root, dataset)

    def read(self, dataset: str) -> pd.DataFrame:
        """Read one dataset partition as strings; raises `InputFileError` for an unusable file."""
        return read_source(self.location_of(self.location(dataset)))


class SplitSettings(ConfigurableResource):
    """Settings of the train/val/test splits, so that a split can be reproduced from its seed."""

    seed: int = Field(default=0, description="Random seed of the random, cold and cluster splits.")


class TrainingProfile(ConfigurableResource):
    """How much to train: epochs, patience, learning rate and how many pairs; one profile per environment.

    The defaults are the paper's settings on all pairs (`FULL_PROFILE`); `DEMO_PROFILE` trains two
    epochs on a capped subset so that a laptop materialises everything in minutes.
    """

    name: str = Field(default="full", description="Profile name, recorded with every run and study.")
    epochs: int = Field(default=TrainConfig.epochs, description="Maximum number of epochs.")
    patience: int | None = Field(
        default=TrainConfig.patience, description="Stop after this many epochs without a better val AUROC."
    )
    batch_size: int = Field(default=TrainConfig.batch_size, description="Training batch size.")
    lr: float = Field(default=TrainConfig.lr, description="Adam learning rate.")
    max_train_pairs: int | None = Field(default=None, description="Cap on training pairs (None: all).")
    max_eval_pairs: int | None = Field(default=None, description="Cap on val and on test pairs (None: all).")
    seed: int = Field(default=TrainConfig.seed, description="Seed of the model, the shuffling and the capped subsets.")
    threads: int | None = Field(default=None, description="torch CPU threads (None: torch's default).")
    device: str = Field(
        default=TrainConfig.device, description='"auto" (CUDA when present, else CPU), "cpu" or "cuda".'
    )
    test_auroc_floor: float = Field(default=0.8, description="The model_evaluation gate: minimum test AUROC.")
    attention_examples: int = Field(default=3, description="Test pairs whose attention is drawn on the molecule.")
    model_width: int | None = Field(
        default=None,
        ge=1,
        description="Width of every layer of the model (`DrugBANConfig.of_width`); None: the reference's (128).",
    )
    cdan_init_epoch: int = Field(
        default=CDANConfig.init_epoch,
        ge=1,
        description="CDAN trainings (drugban_checkpoint's da: cdan): the first epoch with the domain loss; the "
        "epochs before it train the classifier alone (the reference's INIT_EPOCH, 10 of its 100 epochs).",
    )

    def train_config(self, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """The core's `TrainConfig` for this profile, with tuned values (lr, batch_size) applied."""
        config = TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            patience=self.patience,
            seed=self.seed,
            device=self.device,
        )
        return replace(config, **{k: v for k, v in (overrides or {}).items() if k in TrainConfig.__dataclass_fields__})

    def cdan_config(self) -> CDANConfig:
        """The core's `CDANConfig` of this profile: the reference's settings, warm-up scaled to the profile's epochs."""
        return CDANConfig(init_epoch=self.cdan_init_epoch)

    def drugban_config(self, overrides: dict[str, Any] | None = None) -> DrugBANConfig:
        """The profile's `DrugBANConfig` (the reference's, or `DrugBANConfig.of_width`), with tuned architecture
        values (e.g. ban_dropout) applied."""
        base = DrugBANConfig() if self.model_width is None else DrugBANConfig.of_width(self.model_width)
        known = DrugBANConfig.__dataclass_fields__
        return replace(base, **{k: v for k, v in (overrides or {}).items() if k in known})


FULL_PROFILE = TrainingProfile()
DEMO_PROFILE = TrainingProfile(
    name="demo",
    epochs=2,
    patience=None,
    batch_size=32,
    lr=5e-4,
    max_train_pairs=512,
    max_eval_pairs=256,
    test_auroc_floor=0.5,
    cdan_init_epoch=2,
)
"""Two epochs on 512 pairs: a 10× larger learning rate than the paper's so that 32 steps learn something; a CDAN
training warms up for one epoch and adapts in the second."""
TINY_PROFILE = TrainingProfile(
    name="tiny",
    epochs=1,
    patience=None,
    batch_size=32,
    max_train_pairs=128,
    max_eval_pairs=64,
    test_auroc_floor=0.0,
    attention_examples=1,
    model_width=16,
    cdan_init_epoch=1,
)
"""A smoke-test profile (tests, CI): it proves the wiring, not the model, so its AUROC floor is 0 and its model is
the reference's shape at width 16 (its protein CNN, most of the compute, does 64× fewer operations than at 128); a
CDAN training has its domain loss from its one epoch."""
PROFILES: dict[str, TrainingProfile] = {p.name: p for p in (DEMO_PROFILE, FULL_PROFILE, TINY_PROFILE)}


class ScreeningSettings(ConfigurableResource):
    """What the screening stage scores and how it tiles the work (library shards × target blocks); one per environment."""

    library: str | None = Field(
        default=None,
        description="Library location: a file, folder, http(s) URL or s3:// prefix of .smi/.csv/.tsv (optionally .gz) "
        "or Parquet files (S3 through the storage resource's endpoint). None: every validated drug of the datasets.",
    )
    targets: str | None = Field(
        default=None,
        description="Target data set: a file, folder, http(s) URL or s3:// prefix of FASTA, CSV/TSV (id,sequence) "
        "or Parquet files. None: the most-studied targets of the datasets.",
    )
    default_targets: int = Field(
        default=4, description="How many targets the default set holds (most known positives first)."
    )
    max_library: int | None = Field(
        default=None, description="Cap on library rows (the first in library order); None: all."
    )
    shard_size: int = Field(
        default=SHARD_SIZE,
        ge=1,
        description="Library rows per shard: the unit of featurisation and resumption along the library axis.",
    )
    target_block: int = Field(
        default=BLOCK_SIZE,
        ge=1,
        description="Targets per block: a tile (one op, its own GPU pod under k8s) is one shard × one block.",
    )
    top_k: int = Field(default=25, ge=1, description="Molecules kept per target in screening_scores.")
    top_per_drug: int | None = Field(
        default=None,
        ge=1,
        description="Targets kept per molecule (the per-drug answer: molecules × K rows); None: no per-drug table.",
    )
    workers: int | None = Field(
        default=None, description="Featurisation processes of each tile op (None: one per core of its pod)."
    )
    threads: int | None = Field(default=None, description="torch CPU threads of a tile op (None: torch's default).")
    device: str = Field(default="auto", description='"auto" (CUDA when present, else CPU), "cpu" or "cuda".')


class MlflowTracking(InstanceHome):
    """MLflow experiment tracking through `MlflowClient`: one MLflow run per training or trial.

    Without ``tracking_uri`` runs go to a SQLite store under ``$DAGSTER_HOME/mlflow`` (view it with
    ``mlflow ui --backend-store-uri sqlite:///$DAGSTER_HOME/mlflow/mlflow.db``). Every run is tagged
    with the Dagster run id, its URL, the asset key and the partition.
    """

    tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default sqlite:///$DAGSTER_HOME/mlflow/mlflow.db."
    )
    artifact_location: str | None = Field(
        default=None,
        description="Artifact root of a new experiment; default $DAGSTER_HOME/mlflow/artifacts "
        "for the local store, the server's default otherwise.",
    )
    experiment_name: str = Field(default="drugrepo", description="MLflow experiment of every run.")
    ui_url: str | None = Field(
        default=None,
        description="Base URL of the MLflow UI for run links; default the tracking URI when it is "
        "http(s), else http://127.0.0.1:5000 (`mlflow ui`).",
    )
    dagster_url: str = Field(default="http://localhost:3000", description="Base URL of the Dagster UI.")

    def resolved_tracking_uri(self) -> str:
        """The tracking URI in use."""
        if self.tracking_uri:
            return self.tracking_uri
        folder = self.instance_folder("mlflow", "tracking_uri")
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'mlflow.db'}"

    def client(self) -> MlflowClient:
        """A client of the tracking store; the local SQLite store's tables are created by one process at a time.

        Two runs starting together on a fresh instance (a backfill) would otherwise both create
        MLflow's tables and one fails with "table ... already exists".
        """
        from mlflow import MlflowClient

        uri = self.resolved_tracking_uri()
        if self.tracking_uri:
            return MlflowClient(tracking_uri=uri)
        with open(self.instance_folder("mlflow", "tracking_uri") / ".create.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
        return client

    def experiment_id(self, client: MlflowClient) -> str:
        """Id of the experiment, created on first use (safe when two processes race to create it)."""
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return found.experiment_id
        location = self.artifact_location
        if location is None and not self.tracking_uri:
            location = str(self.instance_folder("mlflow", "tracking_uri") / "artifacts")
        try:
            return client.create_experiment(self.experiment_name, artifact_location=location)
        except MlflowException:
            found = client.get_experiment_by_name(self.experiment_name)
            if found is None:
                raise
            return found.experiment_id

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """Link to an MLflow run in the MLflow UI."""
        uri = self.resolved_tracking_uri()
        base = self.ui_url or (uri if Location.of(uri).is_http else "http://127.0.0.1:5000")
        return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def dagster_run_url(self, run_id: str) -> str:
        """Link to a Dagster run in the Dagster UI."""
        return f"{self.dagster_url.rstrip('/')}/runs/{run_id}"

    def existing_run(self, run_id: str, experiment_id: str) -> TrackedRun:
        """A handle to log more (e.g. evaluation) into a run made earlier."""
        return TrackedRun(self.client(), run_id, experiment_id, self.run_url(experiment_id, run_id))

    @contextmanager
    def start_run(
        self,
        context: OpExecutionContext,
        name: str,
        asset_key: str,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> Iterator[TrackedRun]:
        """An MLflow run tagged with the Dagster run; FINISHED on success, FAILED on an exception."""
        client = self.client()
        experiment_id = self.experiment_id(client)
        all_tags = {
            "dagster.run_id": context.run.run_id,
            "dagster.run_url": self.dagster_run_url(context.run.run_id),
            "dagster.asset_key": asset_key,
            "dagster.partition": context.partition_key if context.has_partition_key else "",
            "dagster.job": context.run.job_name,
            **(tags or {}),
        }
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(experiment_id, tags=all_tags, run_name=name)
        tracked = TrackedRun(client, run.info.run_id, experiment_id, self.run_url(experiment_id, run.info.run_id))
        try:
            yield tracked
        except BaseException:
            client.set_terminated(tracked.run_id, status="FAILED")
            raise
        client.set_terminated(tracked.run_id, status="FINISHED")


@dataclass
class TrackedRun:
    """One MLflow run being logged to."""

    client: MlflowClient
    run_id: str
    experiment_id: str
    url: str

    def log_params(self, params: dict[str, Any]) -> None:
        """Log parameters (values as strings), in one batch."""
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log finite metrics at ``step`` in one batch (NaN values are skipped, not stored)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if math.isfinite(float(v))]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Upload a local file into the run's artifacts."""
        self.client.log_artifact(self.run_id, str(path), artifact_path)


class HpoSettings(InstanceHome):
    """Where the Optuna studies live and how many trials one `hpo_study` materialisation adds.

    Without ``storage_url`` studies go to a SQLite file under ``$DAGSTER_HOME/optuna``; off a
    laptop use a PostgreSQL URL (``postgresql+psycopg2://user:pass@host/db``) so trial pods share it.
    """

    storage_url: str | None = Field(
        default=None, description="Optuna RDB storage URL; default sqlite:///$DAGSTER_HOME/optuna/optuna.db."
    )
    n_trials: int = Field(default=2, ge=1, description="Trials run (in parallel) by one materialisation of hpo_study.")
    pruner_startup_trials: int = Field(default=2, description="MedianPruner: trials finished before pruning starts.")
    pruner_warmup_epochs: int = Field(default=0, description="MedianPruner: epochs of a trial before it may be pruned.")
    sampler_seed: int | None = Field(default=None, description="Seed of the TPE sampler (None: random).")

    def resolved_storage_url(self) -> str:
        """The storage URL in use."""
        if self.storage_url:
            return self.storage_url
        folder = self.instance_folder("optuna", "storage_url")
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'optuna.db'}"

    def storage(self) -> optuna.storages.RDBStorage:
        """The shared RDB storage; SQLite waits up to a minute on a lock held by a parallel trial."""
        import optuna

        url = self.resolved_storage_url()
        engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)

    def study(self, name: str) -> optuna.Study:
        """Create or open the study ``name`` (maximising val AUROC, median pruning, TPE sampling)."""
        import optuna

        return optuna.create_study(
            study_name=name,
            storage=self.storage(),
            direction="maximize",
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=self.sampler_seed),
            pruner=optuna.pruners.MedianPruner(
                n_startup_trials=self.pruner_startup_trials, n_warmup_steps=self.pruner_warmup_epochs
            ),
        )
