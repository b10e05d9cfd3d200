"""Tasks of the platform check: a probe run, its artifact back, a data-store round trip."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from prefect import task

from flows.resources.store import data_store
from flows.settings import Settings
from flows.steps.retry import IO_RETRIES
from flows.steps.tracking import prefect_tags


def tracking_uri() -> str:
    """The tracking server this process logs to."""
    import mlflow

    return str(mlflow.get_tracking_uri())


@task(**IO_RETRIES)
def log_probe_run(experiment_name: str) -> str:
    """Log a run with a parameter, a metric and a text artifact; return its run id."""
    import mlflow

    mlflow.set_experiment(experiment_name)
    with mlflow.start_run(run_name="platform-check", tags=prefect_tags()) as run:
        mlflow.log_param("probe", "platform-check")
        mlflow.log_metric("ok", 1.0)
        with tempfile.TemporaryDirectory() as tmp:
            note = Path(tmp) / "probe.txt"
            note.write_text(f"written by flow run {os.environ.get('PREFECT__FLOW_RUN_ID', '-')}\n")
            mlflow.log_artifact(str(note))
    return str(run.info.run_id)


@task(**IO_RETRIES)
def read_probe_artifact(run_id: str) -> str:
    """Download the probe artifact back through the tracking server."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="probe.txt", dst_path=tmp
        )
        return Path(path).read_text()


@task(**IO_RETRIES)
def round_trip_data_store() -> int | None:
    """Write, read back and delete one object in the data store; return its size."""
    store = data_store(Settings.from_env())
    if store is None:
        return None
    key = f"_platform-check/{uuid.uuid4().hex}"
    store.put_bytes(b"ok", key)
    try:
        return len(store.read_bytes(key))
    finally:
        store.delete(key)
