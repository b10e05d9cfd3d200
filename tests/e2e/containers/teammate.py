"""The README's teammate steps, run in a container outside the stack's network with nothing but
MLFLOW_TRACKING_URI/USERNAME/PASSWORD. Prints one JSON line with what came back."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import xgboost as xgb


def digest(path: str | Path) -> str:
    """The sha256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main() -> None:
    """Log a metric, a 3 MB artifact and an xgboost model; register, download, load."""
    leaked = [k for k in os.environ if k.startswith(("AWS_", "S3_", "MLFLOW_S3"))]
    assert not leaked, f"an S3 setting leaked into the teammate's container: {leaked}"
    blob = Path(tempfile.mkdtemp()) / "blob.bin"
    blob.write_bytes(os.urandom(3 << 20))
    mlflow.set_experiment("carol-experiment")
    with mlflow.start_run() as run:
        mlflow.log_metric("rmse", 1.5)
        mlflow.log_artifact(str(blob))
        x = np.random.rand(50, 3)
        model = xgb.XGBRegressor(n_estimators=3).fit(x, x.sum(axis=1))
        mlflow.xgboost.log_model(model, name="model", input_example=x[:2])
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "carol-model")
    back = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="blob.bin")
    loaded = mlflow.pyfunc.load_model(f"models:/carol-model/{version.version}")
    report = {
        "same_bytes": digest(back) == digest(blob),
        "version": version.version,
        "predictions": len(loaded.predict(x[:4])),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
