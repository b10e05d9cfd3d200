"""Fixtures of the integration tests that run flows in this process."""

from __future__ import annotations

import pytest


@pytest.fixture
def flow_env(prefect_api, tracking, s3, unique_name, monkeypatch):
    """Settings a worker would have: tracking URI, data bucket, names unique to the test."""
    bucket = f"data-{unique_name}"
    s3.client().create_bucket(Bucket=bucket)
    for key, value in s3.env().items():
        if key != "MLFLOW_S3_ENDPOINT_URL":
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("DATA_BUCKET", bucket)
    monkeypatch.setenv("MODEL_NAME", unique_name)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", unique_name)
    return unique_name
