"""The MLflow Model Registry side of serving, without Dagster: register a checkpoint, promote, roll back.

A version's source is the ``checkpoint`` artifact folder of the training's MLflow run (``best.pt``;
logged there when missing), so ``models:/<name>@champion`` downloads exactly the file that was
trained, checked and evaluated. Promotion moves an alias and records on the new version the version
the alias named before (tag ``drugrepo.previous_champion``); rollback follows that tag back. A version
waiting to be compared with the champion on live traffic holds the ``challenger`` alias; promoting it
moves the champion alias to it (recording the previous champion, so rollback works) and removes the
challenger alias.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

PREVIOUS_TAG = "drugrepo.previous_champion"
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
CHECKPOINT_ID_TAG = "checkpoint_id"
"""Version tag: the `checkpoint_id` of the version's file (the id in score tables, run tags and API answers)."""
ARTIFACT_DIR = "checkpoint"


class RegistryError(Exception):
    """A registry operation that cannot be done (no alias to roll back, unknown version, ...)."""


@dataclass(frozen=True)
class AliasMove:
    """An alias and the versions it named before and after an operation (equal when nothing moved)."""

    alias: str
    from_version: str | None
    to_version: str


def registered_name(prefix: str, dataset: str) -> str:
    """Registered model name of a dataset partition, e.g. ``drugban-human``."""
    return f"{prefix}-{dataset}"


def checkpoint_source(client: MlflowClient, run_id: str, local_file: Path) -> str:
    """Artifact URI of the run's ``checkpoint`` folder holding ``local_file``'s name (logged there if absent)."""
    logged = {f.path for f in client.list_artifacts(run_id, ARTIFACT_DIR)}
    if f"{ARTIFACT_DIR}/{local_file.name}" not in logged:
        client.log_artifact(run_id, str(local_file), ARTIFACT_DIR)
    return f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{ARTIFACT_DIR}"


def register_checkpoint(
    client: MlflowClient, name: str, source: str, run_id: str, tags: dict[str, str], description: str = ""
) -> tuple[ModelVersion, bool]:
    """The model version of ``run_id`` under ``name``, created if missing: (version, created now)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="DrugBAN checkpoints; the champion alias is served.")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    existing = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if existing:
        return min(existing, key=lambda v: int(v.version)), False
    return client.create_model_version(name, source, run_id=run_id, tags=tags, description=description), True


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version ``name@alias`` names, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def promote(client: MlflowClient, name: str, alias: str, version: str) -> AliasMove:
    """Point ``name@alias`` at ``version``, remembering on it the version the alias named before."""
    before = alias_version(client, name, alias)
    if before == str(version):
        return AliasMove(alias, before, str(version))
    client.set_registered_model_alias(name, alias, str(version))
    if before is not None:
        client.set_model_version_tag(name, str(version), PREVIOUS_TAG, before)
    return AliasMove(alias, before, str(version))


def set_challenger(client: MlflowClient, name: str, version: str, alias: str = CHALLENGER_ALIAS) -> AliasMove:
    """Point ``name@alias`` (the challenger) at ``version``; unlike `promote`, no previous-champion tag is written."""
    before = alias_version(client, name, alias)
    if before != str(version):
        client.set_registered_model_alias(name, alias, str(version))
    return AliasMove(alias, before, str(version))


def promote_challenger(
    client: MlflowClient, name: str, champion: str = CHAMPION_ALIAS, challenger: str = CHALLENGER_ALIAS
) -> AliasMove:
    """Move ``name@champion`` to the version ``name@challenger`` names (see `promote`), then remove the challenger alias."""
    version = alias_version(client, name, challenger)
    if version is None:
        raise RegistryError(f"{name}@{challenger} names no version")
    move = promote(client, name, champion, version)
    client.delete_registered_model_alias(name, challenger)
    return move


def version_checkpoint(client: MlflowClient, name: str, version: str, folder: Path) -> Path:
    """Download the checkpoint a version was registered from (its run's ``checkpoint`` folder, ``best.pt``
    first) into ``folder`` (which must exist)."""
    run_id = client.get_model_version(name, version).run_id
    if not run_id:
        raise RegistryError(f"{name} version {version} names no run to download its checkpoint from")
    local = Path(client.download_artifacts(run_id, ARTIFACT_DIR, str(folder)))
    files = sorted(local.rglob("*.pt"))
    if not files:
        raise RegistryError(f"{name} version {version}: no .pt file in the {ARTIFACT_DIR} folder of run {run_id}")
    return next((f for f in files if f.name == "best.pt"), files[0])


def rollback(client: MlflowClient, name: str, alias: str = CHAMPION_ALIAS, to_version: str | None = None) -> AliasMove:
    """Move ``name@alias`` back to the version it named before its last promotion (or to ``to_version``)."""
    from mlflow.exceptions import MlflowException

    current = alias_version(client, name, alias)
    if current is None:
        raise RegistryError(f"{name}@{alias} names no version")
    target = to_version
    if target is None:
        target = client.get_model_version(name, current).tags.get(PREVIOUS_TAG)
        if not target:
            raise RegistryError(f"{name}@{alias} (version {current}) has no previous version to go back to")
    try:
        client.get_model_version(name, str(target))
    except MlflowException:
        raise RegistryError(f"{name} has no version {target}") from None
    client.set_registered_model_alias(name, alias, str(target))
    return AliasMove(alias, current, str(target))
