"""The prediction API (FastAPI): scores pairs and screens libraries with the ML core, no Dagster inside."""
