"""Tasks of reap-mlflow-runs: MLflow runs left RUNNING by flow runs that ended."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from platform_names import FAILURE_REASON_TAG, FLOW_RUN_TAG
from prefect import task

from flows.steps.retry import IO_RETRIES

if TYPE_CHECKING:
    from mlflow.entities import Run


@task(**IO_RETRIES)
def running_mlflow_runs() -> list[Run]:
    """MLflow runs still RUNNING that a Prefect flow run made."""
    import mlflow

    runs: list[Run] = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{FLOW_RUN_TAG}` LIKE '%'",
        output_format="list",
    )
    return runs


@task(**IO_RETRIES)
def flow_run_end_state(flow_run_id: str) -> str | None:
    """The final state's name of a flow run; None while it may still be working."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            state = client.read_flow_run(UUID(flow_run_id)).state
        except ObjectNotFound:
            return "DELETED"
    return state.name if state is not None and state.is_final() else None


@task(**IO_RETRIES)
def fail_run(run_id: str, reason: str) -> None:
    """Mark one MLflow run FAILED, saying why."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_tag(run_id, FAILURE_REASON_TAG, reason)
    client.set_terminated(run_id, status="FAILED")
