"""The gateway's checks of a request's content (policy.Check): each returns why it is refused, or
None. They read the JSON body and the query; the flow-run check asks Prefect about the run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flows.names import STARTED_BY_TAG_PREFIX as STARTED_BY_PREFIX
from services.gateway.policy import Check

# What a deployment's run may carry when it is not an admin's: the parameters (Prefect checks
# them against the deployment's schema), a name, tags, an idempotency key, the scheduled state,
# and what Prefect's own client sends for a run started from inside a flow.
DECLARED_RUN_FIELDS = frozenset(
    {
        "parameters",
        "name",
        "tags",
        "idempotency_key",
        "state",
        "enforce_parameter_schema",
        "parent_task_run_id",
        "labels",
    }
)

# The states a teammate may put a flow run in: cancelling it, or scheduling it again to retry
# (what the UI's Cancel and Retry buttons and `prefect flow-run retry` send).
TEAMMATE_STATES = {("CANCELLING", None), ("CANCELLED", None), ("SCHEDULED", "AwaitingRetry")}


@dataclass(frozen=True)
class Caller:
    """A signed-in account, as the gateway knows it."""

    username: str
    role: str
    work_queues: tuple[str, ...] = ()


FlowRunLookup = Callable[[str], Awaitable[Mapping[str, Any] | None]]


def empty(value: Any) -> bool:
    """True for what Prefect's client sends for a field it leaves unset."""
    return value is None or value == {} or value == [] or value == ""


def declared_run(body: Any, caller: Caller) -> str | None:
    """A run of a deployment with its declared parameters: no job variables, no other queue."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if not empty(body.get("job_variables")):
        return "job variables are for admins: a run uses its deployment's"
    extra = sorted(key for key, value in body.items() if key not in DECLARED_RUN_FIELDS)
    extra = [key for key in extra if not empty(body[key]) and key != "job_variables"]
    if extra:
        return f"a run of a deployment takes its parameters only, not {', '.join(extra)}"
    if body.get("enforce_parameter_schema") is False:
        return "parameters are always checked against the deployment's schema"
    state = body.get("state") or {}
    if not isinstance(state, dict) or state.get("type", "SCHEDULED") != "SCHEDULED":
        return "a new run starts scheduled"
    if caller.role != "worker" and not empty(body.get("parent_task_run_id")):
        return "only flow runs start runs as their subflows"
    return None


def cancel_or_retry(body: Any) -> str | None:
    """A teammate cancels a run or schedules it again; nothing else."""
    state = body.get("state") if isinstance(body, dict) else None
    if not isinstance(state, dict):
        return "the body must name a state"
    wanted = (str(state.get("type", "")).upper(), state.get("name"))
    allowed = wanted in TEAMMATE_STATES or (wanted[0], None) in TEAMMATE_STATES
    if not allowed:
        return f"teammates cancel or retry runs; {wanted[0] or 'this state'} is for admins"
    return None


def own_queues(body: Any, caller: Caller) -> str | None:
    """A worker polls only its own work queues (naming none would poll them all)."""
    names = body.get("work_queue_names") if isinstance(body, dict) else None
    if not names:
        return f"name the work queues to poll ({', '.join(caller.work_queues)})"
    others = sorted(set(names) - set(caller.work_queues))
    if others:
        own = ", ".join(caller.work_queues)
        return f"worker {caller.username} polls {own}, not {', '.join(others)}"
    return None


async def own_flow_run(flow_run_id: str, caller: Caller, lookup: FlowRunLookup) -> str | None:
    """A worker changes the flow runs of its own queues, and the subflows they start (which
    belong to no deployment)."""
    flow_run = await lookup(flow_run_id)
    if flow_run is None:
        return None  # Prefect answers 404 itself
    if flow_run.get("deployment_id") is None:
        return None
    if flow_run.get("work_queue_name") in caller.work_queues:
        return None
    return (
        f"flow run {flow_run_id} is on work queue {flow_run.get('work_queue_name')!r}, not one of "
        f"worker {caller.username}'s"
    )


def no_secrets(body: Any, query: Mapping[str, str]) -> str | None:
    """Block documents read without their secret values (the UI shows them masked)."""
    asked = query.get("include_secrets", "false").lower() == "true"
    if isinstance(body, dict) and body.get("include_secrets") is True:
        asked = True
    return "secret values of blocks are for admins and workers" if asked else None


async def refusal(
    check: Check,
    caller: Caller,
    body: Any,
    query: Mapping[str, str],
    path_id: str | None,
    lookup: FlowRunLookup,
) -> str | None:
    """Why ``check`` refuses this request, or None."""
    if check is Check.DECLARED_RUN:
        return declared_run(body, caller)
    if check is Check.CANCEL_OR_RETRY:
        return cancel_or_retry(body)
    if check is Check.OWN_QUEUES:
        return own_queues(body, caller)
    if check is Check.NO_SECRETS:
        return no_secrets(body, query)
    if check is Check.OWN_FLOW_RUN:
        return await own_flow_run(str(path_id), caller, lookup)
    raise AssertionError(f"unknown check {check}")


def with_starter(body: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """The run's tags with ``started-by:<account>``. A teammate's own such tags are replaced; a
    worker's flows pass on the starter of the run that started them, so theirs are kept."""
    tags = [str(tag) for tag in body.get("tags") or []]
    if caller.role == "worker" and any(tag.startswith(STARTED_BY_PREFIX) for tag in tags):
        return {**body, "tags": tags}
    kept = [tag for tag in tags if not tag.startswith(STARTED_BY_PREFIX)]
    return {**body, "tags": [*kept, f"{STARTED_BY_PREFIX}{caller.username}"]}
