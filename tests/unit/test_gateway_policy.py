"""The gateway's rules against the installed Prefect's routes, and its checks of request bodies."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway import policy
from services.gateway.checks import (
    Caller,
    cancel_or_retry,
    declared_run,
    no_secrets,
    own_flow_run,
    own_queues,
    with_starter,
)

ALICE = Caller("alice", "teammate")
LAPTOP = Caller("laptop", "worker", ("default",))


def prefect_routes() -> set[tuple[str, str]]:
    """(method, path) of every route of Prefect's API, WebSockets as method "WS"."""
    from prefect.server.api.server import API_ROUTERS, create_api_app

    spec = create_api_app().openapi()
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    for router in API_ROUTERS:
        for route in router.routes:
            if type(route).__name__ in ("APIWebSocketRoute", "WebSocketRoute"):
                routes.add(("WS", route.path))
    return routes


def test_every_prefect_route_has_a_decision_and_no_rule_names_a_missing_route():
    listed = {(rule.method, rule.template) for rule in policy.RULES}
    undecided = prefect_routes() - listed
    assert not undecided, f"Prefect routes nobody decided on (add them to policy.py): {undecided}"
    stale = listed - prefect_routes()
    assert not stale, f"rules for routes this Prefect does not have: {stale}"


def test_a_route_is_either_for_admins_only_or_for_some_role():
    admin_only = {(r.method, r.template) for r in policy.RULES if not r.roles}
    allowed = {(r.method, r.template) for r in policy.RULES if r.roles}
    assert not admin_only & allowed, admin_only & allowed


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("POST", "/flow_runs/filter", "/flow_runs/filter"),
        ("GET", "/flow_runs/8c1b", "/flow_runs/{id}"),
        ("POST", "/flow_runs/8c1b/set_state", "/flow_runs/{id}/set_state"),
        ("GET", "/deployments/name/train/train", "/deployments/name/{flow_name}/{deployment_name}"),
        ("POST", "/deployments/", "/deployments/"),
        ("POST", "/deployments", "/deployments/"),
        ("GET", "/not/a/route", None),
    ],
)
def test_requests_find_their_route_literal_segments_first(method, path, template):
    assert policy.route_of(method, path) == template


def test_teammates_read_but_do_not_write_the_platform():
    assert policy.rules_for("POST", "/flow_runs/filter", policy.Role.TEAMMATE)
    for method, template in [
        ("POST", "/deployments/"),
        ("PATCH", "/work_pools/{name}"),
        ("POST", "/automations/"),
        ("POST", "/block_documents/"),
        ("POST", "/variables/"),
        ("POST", "/logs/"),
        ("WS", "/events/in"),
    ]:
        assert not policy.rules_for(method, template, policy.Role.TEAMMATE), template


def test_a_declared_run_has_no_job_variables_nor_another_queue():
    assert declared_run({"parameters": {"month": "2021-01"}, "tags": ["x"]}, ALICE) is None
    # What Prefect's client sends for fields it leaves unset passes.
    assert declared_run({"parameters": {}, "job_variables": {}, "labels": {}}, ALICE) is None
    assert "job variables" in declared_run({"job_variables": {"command": "id"}}, ALICE)
    assert "work_queue_name" in declared_run({"work_queue_name": "in-stack"}, ALICE)
    assert "checked" in declared_run({"enforce_parameter_schema": False}, ALICE)
    assert "scheduled" in declared_run({"state": {"type": "RUNNING"}}, ALICE)
    assert declared_run({"parent_task_run_id": "t"}, ALICE)
    assert declared_run({"parent_task_run_id": "t"}, LAPTOP) is None
    assert declared_run([], ALICE) == "the body must be a JSON object"


def test_teammates_only_cancel_or_retry():
    assert cancel_or_retry({"state": {"type": "CANCELLING"}}) is None
    assert cancel_or_retry({"state": {"type": "SCHEDULED", "name": "AwaitingRetry"}}) is None
    assert cancel_or_retry({"state": {"type": "SCHEDULED", "name": "Late"}})
    assert cancel_or_retry({"state": {"type": "COMPLETED"}})
    assert cancel_or_retry({"state": {"type": "RUNNING"}})
    assert cancel_or_retry({})


def test_workers_poll_and_change_only_their_own_queues():
    assert own_queues({"work_queue_names": ["default"]}, LAPTOP) is None
    assert "in-stack" in own_queues({"work_queue_names": ["default", "in-stack"]}, LAPTOP)
    assert own_queues({}, LAPTOP)  # naming none polls them all

    async def lookup(flow_run_id: str):
        return {
            "mine": {"deployment_id": "d", "work_queue_name": "default"},
            "theirs": {"deployment_id": "d", "work_queue_name": "in-stack"},
            "subflow": {"deployment_id": None, "work_queue_name": None},
        }.get(flow_run_id)

    def check(flow_run_id: str):
        return asyncio.run(own_flow_run(flow_run_id, LAPTOP, lookup))

    assert check("mine") is None and check("subflow") is None and check("missing") is None
    assert "in-stack" in check("theirs")


def test_secrets_of_blocks_are_not_for_teammates():
    assert no_secrets(None, {}) is None
    assert no_secrets(None, {"include_secrets": "true"})
    assert no_secrets({"include_secrets": True}, {})


def test_a_run_records_its_starter_and_nobody_else():
    forged = {"tags": ["started-by:bob", "mine"]}
    assert with_starter(forged, ALICE)["tags"] == ["mine", "started-by:alice"]
    # A worker's flows pass on who started the run that starts theirs.
    assert with_starter(forged, LAPTOP)["tags"] == ["started-by:bob", "mine"]
    assert with_starter({}, LAPTOP)["tags"] == ["started-by:laptop"]
