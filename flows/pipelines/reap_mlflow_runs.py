"""Mark FAILED the MLflow runs whose Prefect flow run ended without closing them.

MLflow has no reaper: a worker killed mid-training leaves its run RUNNING forever. Prefect
learns of the crash from missing heartbeats (the zombie automation), and this flow's deployment
trigger (prefect.yaml: on each crashed flow run) then runs it; an hourly schedule is the backstop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from platform_names import FLOW_RUN_TAG
from prefect import flow, get_run_logger

from flows.pipelines import FLOW_TIMEOUT_S
from flows.steps.reaping import (
    fail_run,
    flow_run_end_state,
    running_mlflow_runs,
)

if TYPE_CHECKING:
    pass


@flow(name="reap-mlflow-runs", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S["reap-mlflow-runs"])
def reap_mlflow_runs() -> list[str]:
    """Mark FAILED each RUNNING MLflow run whose flow run has ended; return their ids."""
    logger = get_run_logger()
    failed = []
    for run in running_mlflow_runs():
        flow_run_id = run.data.tags[FLOW_RUN_TAG]
        end_state = flow_run_end_state(flow_run_id)
        if end_state is None:
            continue
        fail_run(
            run.info.run_id,
            f"Prefect flow run {flow_run_id} ended {end_state} while this run was RUNNING",
        )
        logger.info(
            "MLflow run %s -> FAILED (flow run %s %s)", run.info.run_id, flow_run_id, end_state
        )
        failed.append(run.info.run_id)
    print(f"{len(failed)} orphaned MLflow run(s) marked FAILED")
    return failed
