"""Following a deployment's flow run from the command line: its logs as they come, its end."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flows.cli.lazy import import_in_background

if TYPE_CHECKING:
    from uuid import UUID

    from mlflow.entities import Run
    from prefect.client.schemas.objects import FlowRun, Log


def follow(
    deployment: str,
    parameters: dict[str, Any],
    timeout_s: int,
    job_variables: dict[str, Any] | None = None,
) -> FlowRun:
    """Start a deployment's flow run and print its logs as they come; return the ended run."""
    from prefect.deployments import run_deployment

    from flows.resources.deployments import starter_tags

    # Called outside an event loop, run_deployment runs synchronously and returns the flow run.
    flow_run: FlowRun = run_deployment(
        deployment,
        parameters=parameters,
        timeout=0,
        tags=starter_tags(),
        job_variables=job_variables,
    )  # type: ignore[assignment]
    print(f"flow run {flow_run.name} ({flow_run.id}) of {deployment}", flush=True)
    ended = asyncio.run(stream_until_final(flow_run.id, timeout_s))
    print(f"flow run {ended.name} ({ended.id}): {state_name(ended)}", flush=True)
    return ended


def routine(log: Log) -> bool:
    """A task's "Finished in state Completed()" line: one per task, nothing to read in it."""
    return log.task_run_id is not None and log.message.startswith("Finished in state Completed")


def state_event(event: str) -> str | None:
    """The state a flow-run event announces ("prefect.flow-run.Running" -> "Running")."""
    prefix, _, state = event.rpartition(".")
    return state if prefix == "prefect.flow-run" and state[:1].isupper() else None


def state_name(flow_run: FlowRun) -> str:
    """The flow run's state, by name."""
    return str(flow_run.state.name) if flow_run.state else "unknown"


async def stream_until_final(flow_run_id: UUID, timeout_s: float) -> FlowRun:
    """Print the flow run's log lines and state changes as they come, until it ends."""
    import anyio
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import Log
    from prefect.events.subscribers import FlowRunSubscriber

    with anyio.move_on_after(timeout_s):
        # After the terminal event, wait 1 s (Prefect's default: 3) for the last log lines.
        async with FlowRunSubscriber(flow_run_id=flow_run_id, straggler_timeout=1) as subscriber:
            async for item in subscriber:
                if isinstance(item, Log):
                    if not routine(item):
                        print(f"{item.timestamp:%H:%M:%S} | {item.message}", flush=True)
                elif (state := state_event(item.event)) is not None:
                    print(f"{item.occurred:%H:%M:%S} | flow run {state}", flush=True)
    async with get_client() as client:
        return await client.read_flow_run(flow_run_id)


def finished_run(flow_run_id: str) -> Run:
    """The FINISHED MLflow run a flow run made (flows tag their runs with the flow-run id; a
    retried flow run may also have a FAILED run from its crashed attempt)."""
    from mlflow import MlflowClient

    from flows.resources.registry import runs_of_flow_run

    runs = runs_of_flow_run(MlflowClient(), flow_run_id, status="FINISHED")
    if not runs:
        raise LookupError(f"no FINISHED MLflow run is tagged with flow run {flow_run_id}")
    return runs[0]


def run_and_report(
    deployment: str,
    parameters: dict[str, Any],
    summary: Callable[[str], list[str]],
    timeout_s: int,
    job_variables: dict[str, Any] | None = None,
) -> int:
    """Run a deployment on the worker, print its log lines as they come, then ``summary`` of
    the ended flow run (read from MLflow); the exit code."""
    import_in_background("mlflow")  # the summary needs it; the flow run takes longer than that
    ended = follow(deployment, parameters, timeout_s, job_variables)
    if not (ended.state and ended.state.is_completed()):
        print(ended.state.message if ended.state else "", file=sys.stderr)
        return 1
    try:
        print("\n".join(summary(str(ended.id))))
    except LookupError as error:
        print(error, file=sys.stderr)
        return 1
    return 0
