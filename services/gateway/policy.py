"""Who may call which of Prefect's API routes: the gateway's rules, as data.

Every route of Prefect's API (its OpenAPI paths, and its WebSocket routes) is listed once below,
under the roles that may call it; ``tests/unit/test_gateway_policy.py`` holds the table to the
routes of the installed Prefect, so an upgrade that adds a route fails until someone decides who
may call it (until then the gateway refuses it to everyone but admins).

Roles: admins (MLflow admins) may call anything. Teammates read what the UI shows, start runs of
the platform's deployments with their declared parameters, and cancel or retry runs. Workers on
other hosts (accounts made by `make worker-env`) call what a worker and the flow runs it starts
call, polling only the work queues they were made for. Some routes take a check of the request
on top (``Check``): the gateway runs it before forwarding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What an account is to the gateway."""

    ADMIN = "admin"
    TEAMMATE = "teammate"
    WORKER = "worker"


class Check(StrEnum):
    """A look at the request itself, beyond its route (services/gateway/checks.py)."""

    NO_SECRETS = "no-secrets"  # block documents without their secret values
    DECLARED_RUN = "declared-run"  # a deployment's run: its parameters, no job variables
    CANCEL_OR_RETRY = "cancel-or-retry"  # the only states a teammate sets on a flow run
    OWN_QUEUES = "own-queues"  # a worker polls the work queues it was made for
    OWN_FLOW_RUN = "own-flow-run"  # a worker changes flow runs of its queues (or their subflows)


@dataclass(frozen=True)
class Rule:
    """Who may call one route (a method and Prefect's path template, under /api)."""

    method: str
    template: str
    roles: frozenset[Role]
    check: Check | None = None


T, W = Role.TEAMMATE, Role.WORKER
EVERYONE, WORKERS, ADMINS = frozenset({T, W}), frozenset({W}), frozenset[Role]()

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
WS /events/out
WS /logs/out
"""

# Block documents: everyone reads them, only workers (whose flows may need them) with secrets.
BLOCK_DOCUMENT_READS = """
GET /block_documents/{id}
POST /block_documents/filter
POST /block_documents/count
GET /block_types/slug/{slug}/block_documents
GET /block_types/slug/{slug}/block_documents/name/{block_document_name}
"""

# What a worker and the flow runs it starts write: its heartbeat and polls, flow and task runs'
# states, subflows, logs, artifacts, events, concurrency slots, and runs of deployments the
# platform's flows start (tuning's trials).
WORKER_WRITES = """
POST /work_pools/{work_pool_name}/workers/heartbeat
POST /flows/
POST /flow_runs/
PATCH /flow_runs/{id}/labels
POST /task_runs/
PATCH /task_runs/{id}
POST /task_runs/{id}/set_state
POST /logs/
POST /artifacts/
PATCH /artifacts/{id}
POST /events
POST /concurrency_limits/increment
POST /concurrency_limits/decrement
POST /v2/concurrency_limits/increment
POST /v2/concurrency_limits/increment-with-lease
POST /v2/concurrency_limits/decrement
POST /v2/concurrency_limits/decrement-with-lease
POST /v2/concurrency_limits/leases/{lease_id}/renew
WS /events/in
WS /work_pools/{work_pool_name}/workers/connect
"""

# Writes with a check of their own.
CHECKED = [
    Rule("POST", "/work_pools/{name}/get_scheduled_flow_runs", WORKERS, Check.OWN_QUEUES),
    Rule("POST", "/flow_runs/{id}/set_state", WORKERS, Check.OWN_FLOW_RUN),
    Rule("PATCH", "/flow_runs/{id}", WORKERS, Check.OWN_FLOW_RUN),
    Rule("POST", "/flow_runs/{id}/set_state", frozenset({T}), Check.CANCEL_OR_RETRY),
    Rule("POST", "/deployments/{id}/create_flow_run", EVERYONE, Check.DECLARED_RUN),
]

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


def parse(table: str, roles: frozenset[Role], check: Check | None = None) -> list[Rule]:
    """Rules from lines of ``METHOD /template``."""
    lines = (line.split() for line in table.splitlines() if line.strip())
    return [Rule(method, template, roles, check) for method, template in lines]


RULES: list[Rule] = [
    *parse(READS, EVERYONE),
    *parse(BLOCK_DOCUMENT_READS, frozenset({T}), Check.NO_SECRETS),
    *parse(BLOCK_DOCUMENT_READS, WORKERS),
    *parse(WORKER_WRITES, WORKERS),
    *CHECKED,
    *parse(ADMIN_ONLY, ADMINS),
]


@dataclass(frozen=True)
class Route:
    """A template compiled for matching; more literal segments win over placeholders."""

    method: str
    template: str
    pattern: re.Pattern[str]
    literal_segments: int


def compile_route(method: str, template: str) -> Route:
    """A route's pattern: each ``{name}`` matches one path segment."""
    parts = template.strip("/").split("/")
    regex = "/".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
    literal = sum(not part.startswith("{") for part in parts)
    return Route(method, template, re.compile(f"/{regex}/?"), literal)


ROUTES = {(rule.method, rule.template): compile_route(rule.method, rule.template) for rule in RULES}


def route_of(method: str, path: str) -> str | None:
    """The template of the route a request under /api reaches, or None when none is known."""
    found = [
        route
        for (known_method, _), route in ROUTES.items()
        if known_method == method and route.pattern.fullmatch(path)
    ]
    if not found:
        return None
    return max(found, key=lambda route: route.literal_segments).template


def rules_for(method: str, template: str, role: Role) -> list[Rule]:
    """The rules that let ``role`` call a route (empty: refused)."""
    return [
        rule
        for rule in RULES
        if rule.method == method and rule.template == template and role in rule.roles
    ]


READ_ROUTES = {(rule.method, rule.template) for rule in parse(READS + BLOCK_DOCUMENT_READS, ADMINS)}


def is_read(method: str, template: str | None) -> bool:
    """True for the routes that only read (the audit log leaves these out)."""
    return (method, template) in READ_ROUTES
