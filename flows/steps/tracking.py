"""MLflow runs that flows make: tags that link them to Prefect, links to the UI, inputs by hash."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from platform_names import (
    DEPLOYMENT_ID_TAG,
    DEPLOYMENT_TAG,
    FLOW_RUN_NAME_TAG,
    FLOW_RUN_TAG,
    STARTED_BY_TAG,
    STARTED_BY_TAG_PREFIX,
)
from prefect import get_run_logger, task

from flows.settings import Settings
from flows.steps.retry import IO_RETRIES

if TYPE_CHECKING:
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Run

    from flows.logic.trips import TripData


def prefect_tags() -> dict[str, str]:
    """Tags that link an MLflow run back to the Prefect flow run that made it, and who
    started that."""
    from prefect.runtime import deployment, flow_run

    starters = [t for t in flow_run.tags or [] if str(t).startswith(STARTED_BY_TAG_PREFIX)]
    tags = {
        FLOW_RUN_TAG: str(flow_run.id or ""),
        FLOW_RUN_NAME_TAG: str(flow_run.name or ""),
        STARTED_BY_TAG: starters[-1].removeprefix(STARTED_BY_TAG_PREFIX) if starters else "",
    }
    if deployment.id:
        tags[DEPLOYMENT_TAG] = str(deployment.name)
        tags[DEPLOYMENT_ID_TAG] = str(deployment.id)
    return {k: v for k, v in tags.items() if v}


def run_url(run: Run) -> str:
    """The run's page in the MLflow UI (MLFLOW_UI_URL when the tracking URI is internal)."""
    import mlflow

    base = (Settings.from_env().mlflow_ui_url or mlflow.get_tracking_uri()).rstrip("/")
    return f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


def dataset_reference(data: TripData) -> MetaDataset:
    """The file a run used, named by URI and content hash (cheap, unlike a profiled frame)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():
        # A local path matches several of MLflow's source types; the choice does not matter here.
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(data.source)
    # MetaDataset implements `profile`; MLflow's type information declares it abstract.
    return MetaDataset(  # type: ignore[abstract]
        source=source, name=Path(urlparse(data.source).path).name, digest=data.digest[:16]
    )


@task(**IO_RETRIES)
def open_run(experiment_name: str, run_name: str | None = None) -> str:
    """Create a RUNNING MLflow run tagged with this flow run; return its id.

    Opened before the long work, so a worker that dies mid-way leaves a RUNNING run tagged with its
    flow run, which the reaper flow marks FAILED once Prefect knows the flow run crashed.
    """
    import mlflow
    from mlflow import MlflowClient

    experiment = mlflow.set_experiment(experiment_name)
    created = MlflowClient().create_run(
        experiment.experiment_id, tags=prefect_tags(), run_name=run_name
    )
    return str(created.info.run_id)


@contextmanager
def failed_if_raises(run_id: str) -> Iterator[None]:
    """Mark the run FAILED when the block raises (the error itself goes on)."""
    try:
        yield
    except BaseException:
        end_run_failed(run_id)
        raise


def end_run_failed(run_id: str) -> None:
    """Best effort: mark the run FAILED (the reaper does it later if MLflow is unreachable now)."""
    from mlflow import MlflowClient

    try:
        MlflowClient().set_terminated(run_id, status="FAILED")
    except Exception as error:  # noqa: BLE001 (the flow's own error matters more)
        get_run_logger().warning("could not mark MLflow run %s FAILED: %s", run_id, error)
