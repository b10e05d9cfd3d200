"""What each capability of the gateway's policy (policy.py) allows, decided on the values Prefect's
endpoint would act on (prefect_api.Parsed) and on Prefect's own state (state.PrefectState).

A worker account (a worker on another host, `make worker-env`) owns the flow runs of its own work
queues in the platform's pool, looked up on the server, and, below them, the subflow runs, task
runs, logs, artifacts and events they make. It may create flow runs only as subflows of its own
runs (no deployment, queue or job variables of their own), start deployments only on its own
queues, plus the hand-offs its flows make by design (``HANDOFFS``), and emit only the events a
worker and a flow-run process emit about its own runs. A teammate starts deployments' runs with
their declared parameters and cancels or retries runs. Every decision answers why it refuses.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from services.gateway.policy import Capability
from services.gateway.prefect_api import Parsed
from services.gateway.state import PrefectState

# How deep a chain of subflows may go before the gateway stops looking for its root.
SUBFLOW_DEPTH = 8
# The states a teammate may put a flow run in: cancelling it, or scheduling it again to retry
# (what the UI's Cancel and Retry buttons and `prefect flow-run retry` send: a retry is forced,
# as a final state may not be left otherwise).
TEAMMATE_STATES = {("CANCELLING", None), ("CANCELLED", None)}
RETRY_STATES = {("SCHEDULED", None), ("SCHEDULED", "Scheduled"), ("SCHEDULED", "AwaitingRetry")}
FINAL_STATE_TYPES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
# Fields of a run that choose where and how it runs: the deployment's, never a caller's.
ROUTING_FIELDS = ("work_pool_name", "work_queue_name", "job_variables", "deployment_id")
# The events a worker process and a flow-run process emit (the rest come from the server or the
# stack: state changes, automations' triggers such as the monitoring breach).
WORKER_EVENT_PREFIX = "prefect.worker."
TASK_RUN_EVENT_PREFIX = "prefect.task-run."
ARTIFACT_EVENT_PREFIX = "prefect.artifact."  # Prefect's client, after it made or changed one
FLOW_RUN_HEARTBEAT = "prefect.flow-run.heartbeat"


@dataclass(frozen=True)
class Caller:
    """A signed-in account, as the gateway knows it."""

    username: str
    role: str
    work_queues: tuple[str, ...] = ()


@dataclass(frozen=True)
class HandOff:
    """A deployment a worker's flow may start although it runs on another queue: which flows'
    runs may start it, and the parameters it may be given."""

    started_from: frozenset[str]
    parameters: frozenset[str]


class Decider:
    """Runs a capability's check for a caller against Prefect's state."""

    def __init__(self, state: PrefectState, pool: str, handoffs: Mapping[str, HandOff]) -> None:
        self.state, self.pool, self.handoffs = state, pool, handoffs

    async def refusal(self, caller: Caller, capability: Capability, parsed: Parsed) -> str | None:
        """Why ``caller`` may not make this request under ``capability``, or None."""
        checks: dict[Capability, Callable[[Caller, Parsed], Awaitable[str | None]]] = {
            Capability.READ: self.read,
            Capability.DECLARED_RUN: self.declared_run,
            Capability.CANCEL_OR_RETRY: self.cancel_or_retry,
            Capability.WORKER_POLL: self.worker_poll,
            Capability.WORKER_HEARTBEAT: self.worker_heartbeat,
            Capability.OWN_FLOW_RUN: self.own_flow_run_in_path,
            Capability.OWN_FLOW_RUN_UPDATE: self.own_flow_run_update,
            Capability.SUBFLOW: self.subflow,
            Capability.WORKER_DEPLOYMENT_RUN: self.worker_deployment_run,
            Capability.FLOW_BY_NAME: self.flow_by_name,
            Capability.OWN_TASK_RUN_CREATE: self.own_task_run_create,
            Capability.OWN_TASK_RUN: self.own_task_run_in_path,
            Capability.OWN_LOGS: self.own_logs,
            Capability.OWN_ARTIFACT_CREATE: self.own_artifact_create,
            Capability.OWN_ARTIFACT: self.own_artifact_in_path,
            Capability.OWN_EVENTS: self.own_events_in_body,
            Capability.OWN_TASK_CONCURRENCY: self.own_task_concurrency,
        }
        return await checks[capability](caller, parsed)

    # --- reads and teammates -----------------------------------------------------------------

    async def read(self, caller: Caller, parsed: Parsed) -> str | None:
        """Reads need nothing more (secrets are refused for every request: app.py)."""
        return None

    async def declared_run(self, caller: Caller, parsed: Parsed) -> str | None:
        """A deployment's run with its declared parameters: scheduled, checked against the
        deployment's schema, on the deployment's own queue and job variables."""
        run = parsed.values["flow_run"]
        given = run.model_fields_set
        routed = [name for name in ROUTING_FIELDS if name in given and getattr(run, name, None)]
        if routed:
            return f"a run of a deployment uses its deployment's {', '.join(routed)}"
        if "enforce_parameter_schema" in given and run.enforce_parameter_schema is False:
            return "parameters are always checked against the deployment's schema"
        if run.state is not None and str(run.state.type.value) != "SCHEDULED":
            return "a new run starts scheduled"
        if caller.role != "worker" and run.parent_task_run_id is not None:
            return "only flow runs start runs as their subflows"
        return None

    async def cancel_or_retry(self, caller: Caller, parsed: Parsed) -> str | None:
        """A teammate cancels a run, or schedules a run that ended again (forced, as Prefect's
        CLI does); nothing else."""
        state, force = parsed.values["state"], parsed.values.get("force", False)
        wanted = (str(state.type.value), state.name)
        if wanted in RETRY_STATES:
            current = await self.state.flow_run_state_type(parsed.values["flow_run_id"])
            if current is not None and current not in FINAL_STATE_TYPES and force:
                return f"a run still {current} is not retried by force"
            return None
        if (wanted[0], None) in TEAMMATE_STATES and not force:
            return None
        if force:
            return "forcing a state other than a retry is for admins"
        return f"teammates cancel or retry runs; {wanted[0]} is for admins"

    # --- workers: the pool and their queues ----------------------------------------------------

    async def worker_poll(self, caller: Caller, parsed: Parsed) -> str | None:
        """A worker polls only its own queues of the platform's pool (naming none is all)."""
        if parsed.values["work_pool_name"] != self.pool:
            return f"workers poll the pool {self.pool}"
        return self.own_queues(caller, parsed.values.get("work_queue_names") or [])

    def own_queues(self, caller: Caller, names: Iterable[str]) -> str | None:
        """Why ``names`` are not exactly some of the caller's queues, or None."""
        names = list(names)
        if not names:
            return f"name the work queues to poll ({', '.join(caller.work_queues)})"
        others = sorted(set(names) - set(caller.work_queues))
        if others:
            own = ", ".join(caller.work_queues)
            return f"worker {caller.username} polls {own}, not {', '.join(others)}"
        return None

    async def worker_heartbeat(self, caller: Caller, parsed: Parsed) -> str | None:
        """A worker's heartbeat, in the platform's pool, under its own name."""
        if parsed.values["work_pool_name"] != self.pool:
            return f"workers heartbeat in the pool {self.pool}"
        if parsed.values["name"] != caller.username:
            return f"worker {caller.username} heartbeats under its own name"
        return None

    def worker_channel_hello(self, caller: Caller, pool: str, hello: Any) -> str | None:
        """A worker's hello on the worker channel (WebSocket): its own name, pool and queues,
        and never a pool made for it."""
        payload = hello.payload
        if pool != self.pool:
            return f"workers join the pool {self.pool}"
        if payload.worker_name != caller.username:
            return f"worker {caller.username} joins under its own name"
        if payload.create_pool_if_not_found:
            return "workers never create a pool (--no-create-pool-if-not-found)"
        return self.own_queues(caller, payload.work_queue_names)

    # --- workers: their own runs ---------------------------------------------------------------

    async def owns_flow_run(self, caller: Caller, flow_run_id: UUID | str | None) -> bool:
        """True when the flow run is one of the caller's: on one of its queues of the platform's
        pool, or a subflow (no deployment of its own) of such a run."""
        for _ in range(SUBFLOW_DEPTH):
            if flow_run_id is None:
                return False
            run = await self.state.flow_run(flow_run_id)
            if run is None:
                return False
            if run.work_pool_name == self.pool and run.work_queue_name in caller.work_queues:
                return True
            if run.deployment_id is not None or run.parent_task_run_id is None:
                return False
            flow_run_id = await self.state.flow_run_of_task_run(run.parent_task_run_id)
        return False

    async def owns_task_run(self, caller: Caller, task_run_id: UUID | str | None) -> bool:
        """True when the task run belongs to one of the caller's flow runs."""
        flow_run_id = await self.state.flow_run_of_task_run(task_run_id) if task_run_id else None
        return await self.owns_flow_run(caller, flow_run_id)

    def not_own(self, caller: Caller, what: str) -> str:
        """The refusal of another account's object."""
        queues = ", ".join(caller.work_queues)
        return f"{what} is not a run of worker {caller.username}'s queues ({queues})"

    async def own_flow_run_in_path(self, caller: Caller, parsed: Parsed) -> str | None:
        """The flow run the path names is the caller's."""
        flow_run_id = parsed.values["flow_run_id"]
        if await self.owns_flow_run(caller, flow_run_id):
            return None
        return self.not_own(caller, f"flow run {flow_run_id}")

    async def own_flow_run_update(self, caller: Caller, parsed: Parsed) -> str | None:
        """The caller's flow run, its routing left as it is."""
        refused = await self.own_flow_run_in_path(caller, parsed)
        if refused:
            return refused
        update = parsed.values["flow_run"]
        routed = [name for name in ROUTING_FIELDS if name in update.model_fields_set]
        return f"a flow run's {', '.join(routed)} are for admins" if routed else None

    async def subflow(self, caller: Caller, parsed: Parsed) -> str | None:
        """A new flow run only as a subflow of one of the caller's runs."""
        run = parsed.values["flow_run"]
        routed = [name for name in ROUTING_FIELDS if getattr(run, name, None)]
        if routed:
            return f"a worker's subflow runs where its parent runs, without {', '.join(routed)}"
        if run.parent_task_run_id is None:
            return "a worker creates flow runs only as subflows of its own runs"
        if not await self.owns_task_run(caller, run.parent_task_run_id):
            return self.not_own(caller, f"the parent of task run {run.parent_task_run_id}")
        return None

    async def worker_deployment_run(self, caller: Caller, parsed: Parsed) -> str | None:
        """A deployment's run, started by one of the caller's flow runs: on one of its queues,
        or one of the hand-offs its flows make by design, with the parameters it takes."""
        refused = await self.declared_run(caller, parsed)
        if refused:
            return refused
        run = parsed.values["flow_run"]
        if run.parent_task_run_id is None:
            return "a worker starts deployments' runs only from its own flow runs"
        parent_run = await self.state.flow_run_of_task_run(run.parent_task_run_id)
        if not await self.owns_flow_run(caller, parent_run):
            return self.not_own(caller, f"the parent of task run {run.parent_task_run_id}")
        deployment = await self.state.deployment(parsed.values["deployment_id"])
        if deployment is None:
            return None  # Prefect answers 404 itself
        if deployment.work_pool_name == self.pool and (
            deployment.work_queue_name in caller.work_queues
        ):
            return None
        handoff = self.handoffs.get(deployment.name)
        if handoff is None:
            return f"deployment {deployment.name} runs on the stack's queue, not the worker's"
        started_from = await self.deployment_of_flow_run(parent_run)
        if started_from not in handoff.started_from:
            return f"{deployment.name} is handed off only from {', '.join(handoff.started_from)}"
        extra = sorted(set(run.parameters or {}) - handoff.parameters)
        if extra:
            return f"{deployment.name} takes {', '.join(sorted(handoff.parameters))}, not {extra}"
        return None

    async def deployment_of_flow_run(self, flow_run_id: str | None) -> str | None:
        """The full name of the deployment a flow run belongs to."""
        run = await self.state.flow_run(flow_run_id) if flow_run_id else None
        if run is None or run.deployment_id is None:
            return None
        deployment = await self.state.deployment(run.deployment_id)
        return deployment.name if deployment else None

    async def flow_by_name(self, caller: Caller, parsed: Parsed) -> str | None:
        """A flow named (by a subflow's first run): its name only."""
        flow = parsed.values["flow"]
        extra = sorted(set(flow.model_fields_set) - {"name", "tags", "labels"})
        return f"a worker names a flow, not its {', '.join(extra)}" if extra else None

    async def own_task_run_create(self, caller: Caller, parsed: Parsed) -> str | None:
        """A task run of one of the caller's flow runs."""
        task_run = parsed.values["task_run"]
        if await self.owns_flow_run(caller, task_run.flow_run_id):
            return None
        return self.not_own(caller, f"flow run {task_run.flow_run_id}")

    async def own_task_run_in_path(self, caller: Caller, parsed: Parsed) -> str | None:
        """The task run the path names belongs to one of the caller's flow runs."""
        task_run_id = parsed.values["task_run_id"]
        if await self.owns_task_run(caller, task_run_id):
            return None
        return self.not_own(caller, f"task run {task_run_id}")

    async def consistent_task_run(
        self, caller: Caller, flow_run_id: Any, task_run_id: Any
    ) -> str | None:
        """Why a flow run and task run named together are not the caller's and each other's."""
        if not await self.owns_flow_run(caller, flow_run_id):
            return self.not_own(caller, f"flow run {flow_run_id}")
        if task_run_id is not None:
            owner = await self.state.flow_run_of_task_run(task_run_id)
            if owner is not None and owner != str(flow_run_id):
                return f"task run {task_run_id} is not of flow run {flow_run_id}"
        return None

    async def own_logs(self, caller: Caller, parsed: Parsed) -> str | None:
        """Log lines of the caller's flow runs (and their task runs) only."""
        for log in parsed.values["logs"]:
            refused = await self.consistent_task_run(caller, log.flow_run_id, log.task_run_id)
            if refused:
                return refused
        return None

    async def own_artifact_create(self, caller: Caller, parsed: Parsed) -> str | None:
        """An artifact of one of the caller's flow runs."""
        artifact = parsed.values["artifact"]
        return await self.consistent_task_run(caller, artifact.flow_run_id, artifact.task_run_id)

    async def own_artifact_in_path(self, caller: Caller, parsed: Parsed) -> str | None:
        """An artifact one of the caller's flow runs made."""
        artifact_id = parsed.values["artifact_id"]
        flow_run_id = await self.state.flow_run_of_artifact(artifact_id)
        if await self.owns_flow_run(caller, flow_run_id):
            return None
        return self.not_own(caller, f"artifact {artifact_id}")

    async def own_task_concurrency(self, caller: Caller, parsed: Parsed) -> str | None:
        """Tag concurrency slots taken or given back for one of the caller's task runs."""
        task_run_id = parsed.values["task_run_id"]
        if await self.owns_task_run(caller, task_run_id) or not await self.state.task_run_exists(
            task_run_id
        ):
            return None
        return self.not_own(caller, f"task run {task_run_id}")

    # --- events --------------------------------------------------------------------------------

    async def own_events_in_body(self, caller: Caller, parsed: Parsed) -> str | None:
        """Events POSTed: each as a worker or its flow runs emit it."""
        for event in parsed.values["events"]:
            refused = await self.own_event(caller, event)
            if refused:
                return refused
        return None

    async def own_event(self, caller: Caller, event: Any) -> str | None:
        """An event a worker process or one of the caller's flow-run processes emits about the
        caller's own runs; anything else (state changes, triggers of the stack's automations
        such as the monitoring breach) comes from the stack only."""
        name, resource = str(event.event), event.resource
        related = {str(r.id): r for r in event.related}
        flow_runs = [
            r for r in [resource, *event.related] if str(r.id).startswith("prefect.flow-run.")
        ]
        if name.startswith(WORKER_EVENT_PREFIX):
            if resource.get("prefect.resource.name") != caller.username:
                return f"worker {caller.username} emits events about itself only"
        elif name.startswith(TASK_RUN_EVENT_PREFIX):
            task_run_id = str(resource.id).removeprefix("prefect.task-run.")
            owner = await self.state.flow_run_of_task_run(task_run_id)
            named = [str(r.id).removeprefix("prefect.flow-run.") for r in flow_runs]
            if not named or (owner is not None and owner not in named):
                return f"event {name} does not name the task run's own flow run"
        elif name.startswith(ARTIFACT_EVENT_PREFIX):
            artifact_id = str(resource.id).removeprefix(ARTIFACT_EVENT_PREFIX)
            if not await self.owns_flow_run(
                caller, await self.state.flow_run_of_artifact(artifact_id)
            ):
                return self.not_own(caller, f"artifact {artifact_id} (in event {name})")
        elif name == FLOW_RUN_HEARTBEAT:
            if not str(resource.id).startswith("prefect.flow-run."):
                return "a heartbeat is about a flow run"
        else:
            return f"event {name} comes from the stack only"
        for flow_run in flow_runs:
            flow_run_id = str(flow_run.id).removeprefix("prefect.flow-run.")
            if not await self.owns_flow_run(caller, flow_run_id):
                return self.not_own(caller, f"flow run {flow_run_id} (in event {name})")
        queues = [r for key, r in related.items() if key.startswith("prefect.work-queue.")]
        for queue in queues:
            if queue.get("prefect.resource.name") not in caller.work_queues:
                return f"event {name} names work queue {queue.get('prefect.resource.name')}"
        return None


def event_of(message: str) -> Any:
    """A WebSocket message of /events/in, read with the schema Prefect's server reads it with."""
    from prefect.server.events.schemas.events import Event

    return Event.model_validate_json(message)


def event_message(event: Any) -> str:
    """An event as forwarded: serialised from what was checked."""
    return json.dumps(event.model_dump(mode="json", exclude_unset=True), separators=(",", ":"))
