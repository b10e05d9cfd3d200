"""Mark FAILED the MLflow runs whose Prefect flow run ended without closing them.

MLflow has no reaper: a worker killed mid-training leaves its run RUNNING forever. Prefect
learns of the crash from missing heartbeats (the zombie automation), and the automation
"fail MLflow runs of crashed flow runs" then runs this flow; a schedule is the backstop.
"""

from __future__ import annotations

from uuid import UUID

import mlflow
from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from flows.retry import IO_RETRIES

FLOW_RUN_TAG = "prefect.flow_run_id"


@task(**IO_RETRIES)
def running_mlflow_runs() -> list[mlflow.entities.Run]:
    """MLflow runs still RUNNING that a Prefect flow run made."""
    return mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{FLOW_RUN_TAG}` LIKE '%'",
        output_format="list",
    )


@task(**IO_RETRIES)
def flow_run_end_state(flow_run_id: str) -> str | None:
    """The final state's name of a flow run; None while it may still be working."""
    with get_client(sync_client=True) as client:
        try:
            state = client.read_flow_run(UUID(flow_run_id)).state
        except ObjectNotFound:
            return "DELETED"
    return state.name if state is not None and state.is_final() else None


@flow(name="fail-orphaned-mlflow-runs", log_prints=True)
def fail_orphaned_mlflow_runs() -> list[str]:
    """Mark FAILED each RUNNING MLflow run whose flow run has ended; return their ids."""
    logger = get_run_logger()
    client = MlflowClient()
    failed = []
    for run in running_mlflow_runs():
        flow_run_id = run.data.tags[FLOW_RUN_TAG]
        end_state = flow_run_end_state(flow_run_id)
        if end_state is None:
            continue
        client.set_tag(
            run.info.run_id,
            "failure_reason",
            f"Prefect flow run {flow_run_id} ended {end_state} while this run was RUNNING",
        )
        client.set_terminated(run.info.run_id, status="FAILED")
        logger.info(
            "MLflow run %s -> FAILED (flow run %s %s)", run.info.run_id, flow_run_id, end_state
        )
        failed.append(run.info.run_id)
    print(f"{len(failed)} orphaned MLflow run(s) marked FAILED")
    return failed
