"""The DrugBAN model, its config and bounds, the checkpoint file and calibrated probabilities."""
