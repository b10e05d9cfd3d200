"""Settings of the flows, read from the environment when a flow starts (never at import)."""

from __future__ import annotations

import os
from dataclasses import dataclass

TLC_BASE_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"


@dataclass(frozen=True)
class Settings:
    """Where the flows find MLflow, the data bucket (or folder) and the TLC files."""

    model_name: str
    experiment_name: str
    data_bucket: str | None
    data_dir: str | None
    s3_endpoint_url: str | None
    tlc_base_url: str
    mlflow_ui_url: str | None

    @classmethod
    def from_env(cls) -> Settings:
        """Read the settings the compose file and `.env` provide."""
        return cls(
            model_name=os.environ.get("MODEL_NAME", "taxi-trip-duration"),
            experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME", "taxi-trip-duration"),
            data_bucket=os.environ.get("DATA_BUCKET") or None,
            data_dir=os.environ.get("DATA_DIR") or None,
            s3_endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
            tlc_base_url=os.environ.get("TLC_BASE_URL", TLC_BASE_URL).rstrip("/"),
            mlflow_ui_url=os.environ.get("MLFLOW_UI_URL") or None,
        )


def s3_client(endpoint_url: str | None):
    """A boto3 S3 client with SigV4 (required by MinIO and most S3-compatible servers)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url, config=Config(signature_version="s3v4"))
