"""The gateway's rules against the installed Prefect's routes, and its matcher against Prefect's
own router: a request finds the route Prefect's server would send it to."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from unittest import mock

import pytest

from services.gateway import policy
from services.gateway.prefect_api import PrefectApi, Refused, prefect_api


@pytest.fixture(scope="module")
def api() -> PrefectApi:
    return prefect_api()


def test_every_prefect_route_has_a_decision_and_no_rule_names_a_missing_route(api):
    routes = {(endpoint.method, endpoint.template) for endpoint in api.endpoints()}
    listed = {(rule.method, rule.template) for rule in policy.RULES}
    undecided = routes - listed
    assert not undecided, f"Prefect routes nobody decided on (add them to policy.py): {undecided}"
    stale = listed - routes
    assert not stale, f"rules for routes this Prefect does not have: {stale}"
    assert len(listed) == len(policy.RULES), "a route is listed twice"


def test_every_capability_reads_parameters_its_route_has(api):
    """A capability's check reads the route's parameters by Prefect's names (capabilities.py):
    a renamed parameter in a new Prefect fails here, not in a refusal nobody understands."""
    reads = {
        policy.Capability.DECLARED_RUN: {"flow_run"},
        policy.Capability.CANCEL_OR_RETRY: {"state", "force", "flow_run_id"},
        policy.Capability.WORKER_POLL: {"work_pool_name", "work_queue_names"},
        policy.Capability.WORKER_HEARTBEAT: {"work_pool_name", "name"},
        policy.Capability.OWN_FLOW_RUN: {"flow_run_id"},
        policy.Capability.OWN_FLOW_RUN_UPDATE: {"flow_run_id", "flow_run"},
        policy.Capability.SUBFLOW: {"flow_run"},
        policy.Capability.WORKER_DEPLOYMENT_RUN: {"flow_run", "deployment_id"},
        policy.Capability.FLOW_BY_NAME: {"flow"},
        policy.Capability.OWN_TASK_RUN_CREATE: {"task_run"},
        policy.Capability.OWN_TASK_RUN: {"task_run_id"},
        policy.Capability.OWN_LOGS: {"logs"},
        policy.Capability.OWN_ARTIFACT_CREATE: {"artifact"},
        policy.Capability.OWN_ARTIFACT: {"artifact_id"},
        policy.Capability.OWN_EVENTS: {"events"},
        policy.Capability.OWN_TASK_CONCURRENCY: {"task_run_id"},
    }
    endpoints = {(e.method, e.template): e for e in api.endpoints()}
    for rule in policy.RULES:
        endpoint = endpoints[(rule.method, rule.template)]
        names = {
            field.name
            for dependant in endpoint.dependants
            for kind in ("path_params", "query_params", "header_params", "body_params")
            for field in getattr(dependant, kind)
        }
        for _, capability in rule.capabilities:
            if rule.method == "WS":
                continue  # WebSocket messages are read with their own schemas (app.Relay)
            missing = reads.get(capability, set()) - names
            assert not missing, f"{rule.method} {rule.template} has no {missing} ({capability})"


def test_reads_are_everyones_and_the_rest_is_decided_per_role():
    assert policy.rule_of("POST", "/flow_runs/filter").roles == {
        policy.Role.TEAMMATE,
        policy.Role.WORKER,
    }
    for method, template in [
        ("POST", "/deployments/"),
        ("PATCH", "/work_pools/{name}"),
        ("POST", "/automations/"),
        ("POST", "/block_documents/"),
        ("POST", "/variables/"),
        ("GET", "/admin/settings"),
        ("POST", "/v2/concurrency_limits/increment"),
    ]:
        assert not policy.rule_of(method, template).roles, template
    assert policy.rule_of("POST", "/logs/").capability(policy.Role.TEAMMATE) is None
    worker_logs = policy.rule_of("POST", "/logs/").capability(policy.Role.WORKER)
    assert worker_logs is policy.Capability.OWN_LOGS


def example_path(template: str) -> str:
    """A concrete path for a route template: a UUID or a name for each parameter."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in ("id", "lease_id", "resource_id") or name.endswith("_id"):
            return "8c1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
        return f"some-{name.replace('_', '-')}"

    return re.sub(r"\{([a-z_]+)(?::[a-z]+)?\}", value, template)


def prefects_choice(app: Any, method: str, path: str) -> tuple[str | None, int]:
    """The route Prefect's own router (its app, as its server runs it) sends a request to,
    observed without running the endpoint; and the status when it sends it to none."""
    from fastapi.routing import APIRoute, APIWebSocketRoute
    from starlette.routing import Route, WebSocketRoute

    chosen: list[str | None] = []

    async def choose(self: Any, scope: dict, receive: Any, send: Any) -> None:
        methods = getattr(self, "methods", None)
        if scope["type"] == "http" and methods and scope["method"] not in methods:
            chosen.append(None)  # the route answers 405 itself: no route for this method
        else:
            chosen.append(getattr(self, "path_format", "?"))

    status = 0

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    websocket = method == "WS"
    scope = {
        "type": "websocket" if websocket else "http",
        "method": "GET" if websocket else method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    with (
        mock.patch.object(APIRoute, "handle", choose),
        mock.patch.object(APIWebSocketRoute, "handle", choose),
        mock.patch.object(Route, "handle", choose),
        mock.patch.object(WebSocketRoute, "handle", choose),
    ):
        asyncio.run(app.router(scope, receive, send))
    return (chosen[0] if chosen else None), status


def test_the_gateway_finds_the_route_prefects_router_finds(api):
    """For every route's example path (and the same path with another method), the gateway's
    matcher and Prefect's router agree: same route, or no route."""
    from prefect.server.api.server import create_api_app

    app = create_api_app()
    for endpoint in api.endpoints():
        path = example_path(endpoint.template)
        for method in (endpoint.method, "PUT" if endpoint.method != "PUT" else "POST"):
            if endpoint.method == "WS" and method != "WS":
                continue
            expected, status = prefects_choice(app, method, path)
            try:
                found = api.match(method, path)[0].template
            except Refused:
                found = None
            assert found == expected, (method, path, found, expected, status)
