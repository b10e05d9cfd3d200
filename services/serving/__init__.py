"""The `serving` service: MLflow's scoring server following the champion alias."""
