"""Who may call which of Prefect's API routes, and with which capability: the gateway's rules, as
data.

Every route of Prefect's API (as Prefect's own router has them: services/gateway/prefect_api.py)
is listed once below, under the roles that may call it and the capability each role calls it
with; ``tests/unit/test_gateway_policy.py`` holds the table to the routes of the installed
Prefect, so an upgrade that adds a route fails until someone decides who may call it (until then
the gateway refuses it to everyone but admins). What a capability allows is decided on the
request's parsed values and on Prefect's state (services/gateway/capabilities.py): default deny.

Roles: admins (MLflow admins) may call anything. Teammates read what the UI shows, start runs of
the platform's deployments with their declared parameters, and cancel or retry runs. Workers on
other hosts (accounts made by `make worker-env`) call what a worker and the flow runs it starts
call, on their own queues' runs only. Secret values of blocks are for admins alone, whatever the
route (services/gateway/app.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What an account is to the gateway."""

    ADMIN = "admin"
    TEAMMATE = "teammate"
    WORKER = "worker"


class Capability(StrEnum):
    """What a role may do with a route (services/gateway/capabilities.py decides each)."""

    READ = "read"  # read what the UI shows
    DECLARED_RUN = "declared-run"  # a deployment's run: declared parameters, its own queue
    CANCEL_OR_RETRY = "cancel-or-retry"  # the only states a teammate sets on a flow run
    WORKER_POLL = "worker-poll"  # a worker polls its own queues of the platform's pool
    WORKER_HEARTBEAT = "worker-heartbeat"  # ... and heartbeats there under its own name
    WORKER_CHANNEL = "worker-channel"  # ... and joins the worker channel (WebSocket) so
    OWN_FLOW_RUN = "own-flow-run"  # the path's flow run is one of the worker's
    OWN_FLOW_RUN_UPDATE = "own-flow-run-update"  # ... and its routing is left alone
    SUBFLOW = "subflow"  # a new flow run only as a subflow of one of the worker's
    WORKER_DEPLOYMENT_RUN = "worker-deployment-run"  # own queues, or a hand-off by design
    FLOW_BY_NAME = "flow-by-name"  # a flow named by a subflow's first run
    OWN_TASK_RUN_CREATE = "own-task-run-create"  # a task run of one of the worker's flow runs
    OWN_TASK_RUN = "own-task-run"  # the path's task run is one of the worker's
    OWN_LOGS = "own-logs"  # log lines of the worker's runs only
    OWN_ARTIFACT_CREATE = "own-artifact-create"  # an artifact of one of the worker's runs
    OWN_ARTIFACT = "own-artifact"  # the path's artifact is one of the worker's runs'
    OWN_EVENTS = "own-events"  # events a worker and its flow runs emit, about its own runs
    OWN_TASK_CONCURRENCY = "own-task-concurrency"  # tag slots for the worker's task runs


@dataclass(frozen=True)
class Rule:
    """Who may call one route (a method, "WS" for a WebSocket, and Prefect's path template under
    /api), each role with the capability it calls it with."""

    method: str
    template: str
    capabilities: tuple[tuple[Role, Capability], ...]

    @property
    def roles(self) -> frozenset[Role]:
        """The roles (besides admins) that may call the route at all."""
        return frozenset(role for role, _ in self.capabilities)

    def capability(self, role: Role) -> Capability | None:
        """The capability ``role`` calls the route with, or None when it may not."""
        return dict(self.capabilities).get(role)


T, W = Role.TEAMMATE, Role.WORKER

# Reads: what the UI and the CLI read. POSTs here only query (filters, counts, histories).
READS = """
GET /health
GET /ready
GET /version
GET /hello
GET /csrf-token
GET /admin/version
GET /admin/storage
GET /flows/{id}
GET /flows/name/{name}
POST /flows/count
POST /flows/filter
POST /flows/paginate
GET /flow_runs/{id}
GET /flow_runs/{id}/graph
GET /flow_runs/{id}/graph-v2
GET /flow_runs/{id}/input/{key}
GET /flow_runs/{id}/logs/download
POST /flow_runs/count
POST /flow_runs/lateness
POST /flow_runs/history
POST /flow_runs/filter
POST /flow_runs/paginate
POST /flow_runs/{id}/input/filter
GET /flow_run_states/{id}
GET /flow_run_states/
GET /observed-states
GET /task_runs/{id}
POST /task_runs/count
POST /task_runs/history
POST /task_runs/filter
POST /task_runs/paginate
GET /task_run_states/{id}
GET /task_run_states/
GET /deployments/{id}
GET /deployments/name/{flow_name}/{deployment_name}
POST /deployments/filter
POST /deployments/paginate
POST /deployments/count
GET /deployments/{id}/work_queue_check
GET /deployments/{id}/schedules
GET /saved_searches/{id}
POST /saved_searches/filter
POST /logs/filter
GET /concurrency_limits/{id}
GET /concurrency_limits/tag/{tag}
POST /concurrency_limits/filter
GET /v2/concurrency_limits/{id_or_name}
POST /v2/concurrency_limits/filter
GET /block_types/{id}
GET /block_types/slug/{slug}
POST /block_types/filter
GET /block_capabilities/
GET /block_schemas/{id}
POST /block_schemas/filter
GET /block_schemas/checksum/{checksum}
GET /work_pools/{name}
POST /work_pools/filter
POST /work_pools/count
POST /work_pools/{name}/concurrency_status
GET /work_pools/{work_pool_name}/queues/{name}
POST /work_pools/{work_pool_name}/queues/filter
POST /work_pools/{work_pool_name}/workers/filter
POST /task_workers/filter
GET /work_queues/{id}
GET /work_queues/name/{name}
POST /work_queues/filter
GET /work_queues/{id}/status
POST /work_queues/{id}/concurrency_status
GET /artifacts/{id}
GET /artifacts/{key}/latest
POST /artifacts/filter
POST /artifacts/latest/filter
POST /artifacts/count
POST /artifacts/latest/count
GET /variables/{id}
GET /variables/name/{name}
POST /variables/filter
POST /variables/count
POST /events/filter
GET /events/filter/next
POST /events/count-by/{countable}
GET /automations/{id}
POST /automations/filter
POST /automations/count
GET /automations/related-to/{resource_id}
GET /collections/views/{view}
POST /ui/flows/count-deployments
POST /ui/flows/next-runs
POST /ui/flow_runs/history
POST /ui/flow_runs/count-task-runs
POST /ui/schemas/validate
POST /ui/task_runs/dashboard/counts
POST /ui/task_runs/count
GET /ui/task_runs/{id}
GET /docs
HEAD /docs
GET /docs/oauth2-redirect
HEAD /docs/oauth2-redirect
GET /openapi.json
HEAD /openapi.json
GET /redoc
HEAD /redoc
WS /events/out
WS /logs/out
"""

# Block documents: everyone reads them; their secret values are for admins alone (app.py).
BLOCK_DOCUMENT_READS = """
GET /block_documents/{id}
POST /block_documents/filter
POST /block_documents/count
GET /block_types/slug/{slug}/block_documents
GET /block_types/slug/{slug}/block_documents/name/{block_document_name}
"""

# Writes, each role with its capability. A worker's are what a worker and the flow runs it
# starts write (its channel and polls, its runs' states, subflows, task runs, logs, artifacts
# and events, tag concurrency slots, and runs of deployments its flows start: tuning's trials,
# training's hand-off to promotion), each on its own runs only.
WRITES = """
POST /deployments/{id}/create_flow_run  teammate=declared-run worker=worker-deployment-run
POST /flow_runs/{id}/set_state  teammate=cancel-or-retry worker=own-flow-run
PATCH /flow_runs/{id}  worker=own-flow-run-update
PATCH /flow_runs/{id}/labels  worker=own-flow-run
POST /flow_runs/  worker=subflow
POST /flows/  worker=flow-by-name
POST /task_runs/  worker=own-task-run-create
PATCH /task_runs/{id}  worker=own-task-run
POST /task_runs/{id}/set_state  worker=own-task-run
POST /logs/  worker=own-logs
POST /artifacts/  worker=own-artifact-create
PATCH /artifacts/{id}  worker=own-artifact
POST /events  worker=own-events
WS /events/in  worker=own-events
POST /work_pools/{name}/get_scheduled_flow_runs  worker=worker-poll
POST /work_pools/{work_pool_name}/workers/heartbeat  worker=worker-heartbeat
WS /work_pools/{work_pool_name}/workers/connect  worker=worker-channel
POST /concurrency_limits/increment  worker=own-task-concurrency
POST /concurrency_limits/decrement  worker=own-task-concurrency
"""

# Admins only (and the stack itself, which talks to Prefect directly): changing deployments,
# schedules, work pools and queues, blocks, variables, automations and concurrency limits;
# deleting anything; job variables; the server's settings and database.
ADMIN_ONLY = """
GET /admin/settings
PUT /admin/storage
DELETE /admin/storage
PATCH /flows/{id}
DELETE /flows/{id}
POST /flows/bulk_delete
DELETE /flow_runs/{id}
POST /flow_runs/{id}/resume
POST /flow_runs/bulk_delete
POST /flow_runs/bulk_set_state
POST /flow_runs/{id}/input
DELETE /flow_runs/{id}/input/{key}
DELETE /task_runs/{id}
POST /deployments/
PATCH /deployments/{id}
DELETE /deployments/{id}
POST /deployments/get_scheduled_flow_runs
POST /deployments/bulk_delete
POST /deployments/{id}/schedule
POST /deployments/{id}/resume_deployment
POST /deployments/{id}/pause_deployment
POST /deployments/{id}/create_flow_run/bulk
POST /deployments/{id}/schedules
PATCH /deployments/{id}/schedules/{schedule_id}
DELETE /deployments/{id}/schedules/{schedule_id}
PUT /saved_searches/
DELETE /saved_searches/{id}
POST /concurrency_limits/
DELETE /concurrency_limits/{id}
DELETE /concurrency_limits/tag/{tag}
POST /concurrency_limits/tag/{tag}/reset
POST /v2/concurrency_limits/increment
POST /v2/concurrency_limits/increment-with-lease
POST /v2/concurrency_limits/decrement
POST /v2/concurrency_limits/decrement-with-lease
POST /v2/concurrency_limits/leases/{lease_id}/renew
POST /v2/concurrency_limits/
PATCH /v2/concurrency_limits/{id_or_name}
DELETE /v2/concurrency_limits/{id_or_name}
POST /block_types/
PATCH /block_types/{id}
DELETE /block_types/{id}
POST /block_types/install_system_block_types
POST /block_documents/
DELETE /block_documents/{id}
PATCH /block_documents/{id}
POST /block_schemas/
DELETE /block_schemas/{id}
POST /work_pools/
PATCH /work_pools/{name}
DELETE /work_pools/{name}
POST /work_pools/{work_pool_name}/queues
PATCH /work_pools/{work_pool_name}/queues/{name}
DELETE /work_pools/{work_pool_name}/queues/{name}
DELETE /work_pools/{work_pool_name}/workers/{name}
POST /work_queues/
PATCH /work_queues/{id}
DELETE /work_queues/{id}
POST /work_queues/{id}/get_runs
DELETE /artifacts/{id}
POST /variables/
PATCH /variables/{id}
DELETE /variables/{id}
PATCH /variables/name/{name}
DELETE /variables/name/{name}
POST /automations/
PUT /automations/{id}
PATCH /automations/{id}
DELETE /automations/{id}
DELETE /automations/owned-by/{resource_id}
POST /templates/validate
POST /automations/templates/validate
WS /task_runs/subscriptions/scheduled
"""


def parse(table: str, *capabilities: tuple[Role, Capability]) -> list[Rule]:
    """Rules from lines of ``METHOD /template [role=capability ...]``."""
    rules = []
    for line in table.splitlines():
        if not line.strip():
            continue
        method, template, *granted = line.split()
        given = tuple(
            (Role(role), Capability(capability))
            for role, _, capability in (item.partition("=") for item in granted)
        )
        rules.append(Rule(method, template, given or capabilities))
    return rules


READ_BY_EVERYONE = ((T, Capability.READ), (W, Capability.READ))
RULES: list[Rule] = [
    *parse(READS, *READ_BY_EVERYONE),
    *parse(BLOCK_DOCUMENT_READS, *READ_BY_EVERYONE),
    *parse(WRITES),
    *parse(ADMIN_ONLY),
]
BY_ROUTE: dict[tuple[str, str], Rule] = {(rule.method, rule.template): rule for rule in RULES}
READ_ROUTES = frozenset(
    (rule.method, rule.template) for rule in parse(READS + BLOCK_DOCUMENT_READS)
)


def rule_of(method: str, template: str) -> Rule | None:
    """The rule of a route (None: a route nobody decided on; admins only)."""
    return BY_ROUTE.get((method, template))


def is_read(method: str, template: str | None) -> bool:
    """True for the routes that only read (the audit log leaves these out)."""
    return (method, template) in READ_ROUTES
