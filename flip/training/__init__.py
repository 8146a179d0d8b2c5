"""FLIP training: Ranger optimiser, dynamic boundary-group sampling, data pipeline, training loop (`python -m flip.training`)."""
