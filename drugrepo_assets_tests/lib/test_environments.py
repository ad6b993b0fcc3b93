"""One module names the deployment and builds each environment's resources for both code locations and the tests."""

from pathlib import Path

import pytest

from drugrepo_assets.lib.environments import ENVIRONMENTS, asset_resources, current_env, serving_resources
from drugrepo_assets.lib.resources import TINY_PROFILE
from drugrepo_assets_tests.test_deployments import DEPLOYMENTS, _env_vars_of, read_env_file

SHARED = ("io_manager", "json_io_manager", "storage", "mlflow_tracking")
"""The resources both locations hold: the asset storage and the MLflow store."""


def test_every_environment_is_a_folder_of_deployments() -> None:
    folders = {path.parent.name for path in DEPLOYMENTS.glob("*/drugrepo.env")}
    assert set(ENVIRONMENTS) == folders
    for name in folders:
        assert read_env_file(DEPLOYMENTS / name / "drugrepo.env")["DRUGREPO_ENV"] == name


def test_the_deployment_is_read_from_its_variable_and_checked() -> None:
    assert current_env({}) == "local"
    assert current_env({"DRUGREPO_ENV": "prod"}) == "prod"
    with pytest.raises(
        ValueError, match=r"DRUGREPO_ENV='qa' is not a known environment \(known: local, prod, staging\)"
    ):
        current_env({"DRUGREPO_ENV": "qa"})
    with pytest.raises(ValueError, match="DRUGREPO_ENV='qa'"):
        serving_resources("qa")


@pytest.mark.parametrize("env", sorted(ENVIRONMENTS))
def test_both_locations_share_the_storage_and_mlflow_of_their_environment(env: str) -> None:
    assets, serving = asset_resources(env), serving_resources(env)
    for key in SHARED:
        assert type(assets[key]) is type(serving[key])
        assert assets[key]._convert_to_config_dictionary() == serving[key]._convert_to_config_dictionary(), key


@pytest.mark.parametrize("env", sorted(ENVIRONMENTS))
def test_every_env_var_the_serving_location_reads_is_a_setting_or_a_secret(env: str) -> None:
    settings = read_env_file(DEPLOYMENTS / env / "drugrepo.env")
    secrets = read_env_file(DEPLOYMENTS / "secrets.example.env")
    needed = set().union(*(_env_vars_of(resource) for resource in serving_resources(env).values()))
    assert needed <= set(settings) | set(secrets), needed - set(settings) - set(secrets)


def test_base_puts_every_local_file_under_one_folder(tmp_path: Path) -> None:
    assets, serving = asset_resources("local", tmp_path), serving_resources("local", tmp_path)
    places = [
        assets["io_manager"].base_path,
        assets["json_io_manager"].base_path,
        assets["storage"].base_path,
        assets["mlflow_tracking"].tracking_uri,
        assets["mlflow_tracking"].artifact_location,
        assets["hpo_settings"].storage_url,
        assets["landing"].root,
        serving["drift_settings"].request_log_dir,
    ]
    assert all(place is not None and str(tmp_path) in place for place in places), places
    assert assets["data_source"].root == "bundled"
    without = asset_resources("local")
    assert without["storage"].base_path is None and without["mlflow_tracking"].tracking_uri is None
    with pytest.raises(ValueError, match="for the local environment only"):
        asset_resources("prod", tmp_path)


def test_overrides_replace_known_resources_only(tmp_path: Path) -> None:
    resources = asset_resources("local", tmp_path, training_profile=TINY_PROFILE)
    assert resources["training_profile"] is TINY_PROFILE
    assert set(resources) == set(asset_resources("local"))
    with pytest.raises(ValueError, match="not a resource of this location: trainig_profile"):
        asset_resources("local", trainig_profile=TINY_PROFILE)
    with pytest.raises(ValueError, match="not a resource of this location: training_profile"):
        serving_resources("local", training_profile=TINY_PROFILE)
