"""The tracking server as teammates use it: only its URL, artifacts through its proxy."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
import requests

pytestmark = pytest.mark.integration


def test_server_advertises_no_presigned_transfers(tracking):
    """Clients must never be sent to the S3 endpoint, whose name only the server can resolve."""
    info = requests.get(f"{tracking}/api/3.0/mlflow/server-info", timeout=10).json()
    assert info["store_type"] == "SqlStore"
    assert info["multipart_uploads_enabled"] is False
    assert info["multipart_downloads_enabled"] is False


def test_large_artifact_round_trip_with_only_the_url(
    tracking, mlflow_server, s3, unique_name, tmp_path, monkeypatch, run_folder
):
    """A client without S3 settings logs and reads back a file above the multipart thresholds."""
    # Lower the client's thresholds so the 6 MB file would take the multipart path if the server
    # offered it; the default thresholds (500 MB) would hide a regression in this test.
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(1024 * 1024))
    monkeypatch.setenv("MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE", str(1024 * 1024))
    assert "AWS_ACCESS_KEY_ID" not in os.environ
    payload = os.urandom(6 * 1024 * 1024)
    source = tmp_path / "blob.bin"
    source.write_bytes(payload)

    mlflow.set_experiment(unique_name)
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_metric("rmse", 6.1)
        mlflow.log_artifact(str(source), artifact_path="data")

    fetched = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="data/blob.bin", dst_path=str(tmp_path / "back")
    )
    assert Path(fetched).read_bytes() == payload

    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=mlflow_server.bucket)["Contents"]]
    assert any(key.endswith(f"{run.info.run_id}/artifacts/data/blob.bin") for key in keys)
    server_log = (run_folder / "shared-servers" / "mlflow.log").read_text()
    assert "/presigned" not in server_log and "multipart" not in server_log.lower()


def test_runs_are_stored_in_postgres(tracking, postgres, unique_name):
    """The backend is the PostgreSQL database, not a file inside the server."""
    experiment_id = mlflow.create_experiment(unique_name)
    conn = postgres.connect("mlflow")
    with conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM experiments WHERE experiment_id = %s", (int(experiment_id),))
        assert cur.fetchone() == (unique_name,)
    conn.close()
