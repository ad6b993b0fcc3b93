"""The serving code location: model registry, drift monitoring (Dagster), and the registry helpers the CLI uses."""
