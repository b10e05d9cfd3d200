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
    from prefect.client.orchestration import PrefectClient
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


# The worker's event once a flow run's process has exited: the process sends its last log lines
# before it exits (Prefect drains its log queue at exit), so after this event the logs API holds
# every line the run wrote.
PROCESS_EXITED = "prefect.worker.executed-flow-run"
# How long to wait for that event after the final state of a run that was Running. A run whose
# process never reports (its worker died with it) is read from the logs API after this; one that
# never ran (cancelled while scheduled) has no process to wait for.
PROCESS_EXIT_WAIT_S = 30.0
LOG_PAGE = 200


class LinePrinter:
    """Prints a flow run's log lines once each, whichever way they arrive (stream or API)."""

    def __init__(self) -> None:
        self.printed: set[UUID] = set()

    def log(self, log: Log) -> None:
        """Print a log line unless it was printed already (or says nothing)."""
        if log.id in self.printed:
            return
        self.printed.add(log.id)
        if not routine(log):
            print(f"{log.timestamp:%H:%M:%S} | {log.message}", flush=True)


async def stream_until_final(flow_run_id: UUID, timeout_s: float) -> FlowRun:
    """Print the flow run's log lines and state changes as they come, until it ends and its
    process has exited; then every line the stream missed, from the logs API, in order."""
    import anyio
    from prefect.client.orchestration import get_client

    printer = LinePrinter()
    with anyio.move_on_after(timeout_s):
        await stream(flow_run_id, printer)
    async with get_client() as client:
        for log in await logs_of(client, flow_run_id):
            printer.log(log)
        return await client.read_flow_run(flow_run_id)


async def stream(flow_run_id: UUID, printer: LinePrinter) -> None:
    """Print log lines and state changes as the server streams them, until the run is final and
    its worker says its process exited (or PROCESS_EXIT_WAIT_S after the final state)."""
    import anyio
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.objects import TERMINAL_STATES, StateType
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventAnyResourceFilter, EventFilter
    from prefect.logging.clients import get_logs_subscriber

    resource = f"prefect.flow-run.{flow_run_id}"
    final, ran, exited = anyio.Event(), False, False

    async def logs() -> None:
        log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        async with get_logs_subscriber(filter=log_filter, reconnect_on_clean_close=True) as lines:
            async for line in lines:
                printer.log(line)

    async def events(done: anyio.CancelScope) -> None:
        nonlocal ran, exited
        event_filter = EventFilter(any_resource=EventAnyResourceFilter(id=[resource]))
        async with get_events_subscriber(
            filter=event_filter, reconnect_on_clean_close=True
        ) as subscriber:
            async for event in subscriber:
                # The two may arrive in either order: the process reports its final state
                # itself, and its worker reports its exit.
                exited = exited or event.event == PROCESS_EXITED
                state = state_event(event.event) if event.resource.id == resource else None
                if state is not None:
                    print(f"{event.occurred:%H:%M:%S} | flow run {state}", flush=True)
                    ran = ran or state == "Running"
                    state_type = event.resource.get("prefect.state-type")
                    if state_type and StateType(state_type) in TERMINAL_STATES:
                        final.set()
                if final.is_set() and exited:
                    done.cancel()
                    return

    async def give_up_waiting(done: anyio.CancelScope) -> None:
        await final.wait()
        if ran:
            await anyio.sleep(PROCESS_EXIT_WAIT_S)
        done.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(logs)
        group.start_soon(events, group.cancel_scope)
        group.start_soon(give_up_waiting, group.cancel_scope)


async def logs_of(client: PrefectClient, flow_run_id: UUID) -> list[Log]:
    """Every log line of a flow run the server holds, oldest first."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    found: list[Log] = []
    while True:
        page = await client.read_logs(
            log_filter=log_filter, limit=LOG_PAGE, offset=len(found), sort=LogSort.TIMESTAMP_ASC
        )
        found += page
        if len(page) < LOG_PAGE:
            return found


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
