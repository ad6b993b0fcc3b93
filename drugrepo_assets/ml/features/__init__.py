"""Featurisation: molecules and proteins to model inputs, the feature store, exported features."""
