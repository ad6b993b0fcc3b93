"""The training profiles' model: the reference's by default, the same shape narrower for smoke runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dagster import build_init_resource_context, instance_for_test

from drugrepo_assets.lib.automation_resources import LandingZone
from drugrepo_assets.lib.resources import (
    DEMO_PROFILE,
    FULL_PROFILE,
    TINY_PROFILE,
    HpoSettings,
    MlflowTracking,
    TrainingProfile,
)
from drugrepo_assets.lib.serving_resources import DriftSettings
from drugrepo_assets.lib.storage import InstanceHome
from drugrepo_assets.ml.model.model_config import DrugBANConfig


def test_the_reference_is_width_128_and_every_layer_follows_the_width() -> None:
    assert DrugBANConfig.of_width(128) == DrugBANConfig()
    small = DrugBANConfig.of_width(16)
    assert small.hidden_feats == small.num_filters == (16, 16, 16)
    assert (small.node_in_embedding, small.protein_emb_dim, small.mlp_in_dim, small.mlp_hidden_dim) == (16, 16, 32, 64)
    assert (small.kernel_size, small.ban_heads, small.ban_k) == ((3, 6, 9), 2, 3)


def test_profiles_train_the_reference_model_except_the_smoke_profile() -> None:
    assert FULL_PROFILE.drugban_config() == DEMO_PROFILE.drugban_config() == DrugBANConfig()
    assert TINY_PROFILE.drugban_config() == DrugBANConfig.of_width(TINY_PROFILE.model_width or 0)
    assert TINY_PROFILE.model_width == 16


def test_tuned_values_apply_over_the_width_and_unknown_ones_are_left_out() -> None:
    tuned = TrainingProfile(model_width=8).drugban_config({"ban_dropout": 0.1, "lr": 1e-3, "mlp_out_dim": 4})
    assert tuned == DrugBANConfig(**{**DrugBANConfig.of_width(8).__dict__, "ban_dropout": 0.1, "mlp_out_dim": 4})


def test_defaults_under_the_instance_folder_or_an_error_naming_the_setting(tmp_path: Path) -> None:
    """Each resource whose default lives under ``$DAGSTER_HOME`` resolves it there once set up on an instance,
    and without one asks for its own setting by name."""
    unset: list[tuple[InstanceHome, Callable[[], str], str, str]] = []
    tracking = MlflowTracking()
    unset.append((tracking, tracking.resolved_tracking_uri, "tracking_uri", f"sqlite:///{tmp_path}/mlflow/mlflow.db"))
    hpo = HpoSettings()
    unset.append((hpo, hpo.resolved_storage_url, "storage_url", f"sqlite:///{tmp_path}/optuna/optuna.db"))
    drift = DriftSettings()
    unset.append((drift, drift.resolved_request_log_dir, "request_log_dir", str(tmp_path / "serving" / "requests")))
    landing = LandingZone()
    unset.append((landing, landing.uri, "root", str(tmp_path / "landing")))
    for resource, resolve, setting, _ in unset:
        with pytest.raises(ValueError, match=f"{type(resource).__name__} needs {setting} when no Dagster instance"):
            resolve()
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        for resource, resolve, _, expected in unset:
            resource.setup_for_execution(build_init_resource_context(instance=instance))
            assert resolve() == expected
