"""The serving location's jobs: register and watch a checkpoint, and judge the challenger."""

from dagster import AssetSelection, define_asset_job

from drugrepo_assets.serving.defs.assets import champion_challenger, drift_report, registered_model

serving_job = define_asset_job(
    "serving_job",
    selection=AssetSelection.assets(registered_model, drift_report),
    description="Register the checkpoint (champion or challenger, through the gates) and report drift, for one dataset.",
)
challenger_job = define_asset_job(
    "challenger_job",
    selection=AssetSelection.assets(champion_challenger),
    description="Compare the challenger with the champion (offline and on live traffic); promote it if not worse.",
)
