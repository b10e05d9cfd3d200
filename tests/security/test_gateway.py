"""The Prefect gateway on real servers, one test for each thing a role must not do: anonymous
callers, teammates and worker accounts try it and are refused; and a real worker's whole life
(flow, subflow, tasks, logs, artifacts, events, the worker channel) still works through it."""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import psycopg2
import pytest
import requests
from websockets.sync.client import connect as websocket_connect

from tests.security.conftest import (
    CACHE_TTL_S,
    NO_SUCH_ID,
    POOL,
    Gateway,
    audit_entries,
    call,
    create_account,
    make_worker,
)

pytestmark = pytest.mark.integration


def raw_request(
    gateway: Gateway, method: str, target: str, account=None, body: str | None = None
) -> tuple[int, str]:
    """A request with the target sent exactly as given (requests would normalise it)."""
    host, port = gateway.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if account is not None:
        token = base64.b64encode(":".join(account).encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    connection.request(method, target, body=body, headers=headers)
    answer = connection.getresponse()
    return answer.status, answer.read().decode(errors="replace")


def open_socket(gateway: Gateway, path: str, token: str, first: dict | None = None) -> object:
    """A WebSocket of Prefect's API through the gateway: what it answers after the auth message
    (and ``first``), or the close reason."""
    base = gateway.api.replace("http://", "ws://")
    with websocket_connect(f"{base}{path}", subprotocols=["prefect"]) as socket:  # type: ignore[list-item]
        socket.send(json.dumps({"type": "auth", "token": token}))
        try:
            answer = json.loads(socket.recv(timeout=10))
            if first is None:
                return answer
            socket.send(json.dumps(first))
            return json.loads(socket.recv(timeout=10))
        except Exception as closed:  # noqa: BLE001 (a refusal closes the socket)
            return str(closed)


def test_callers_sign_in_with_their_mlflow_account(gateway, teammate):
    anonymous = call(gateway, None, "POST", "/flows/filter", json={})
    # As Prefect answers: no challenge, which a browser would meet with its native prompt on
    # every call of the UI (the UI asks by itself).
    assert anonymous.status_code == 401 and "www-authenticate" not in anonymous.headers
    wrong = (teammate[0], "not-the-password")
    assert call(gateway, wrong, "POST", "/flows/filter", json={}).status_code == 401
    assert call(gateway, teammate, "POST", "/flows/filter", json={}).status_code == 200
    assert requests.get(f"{gateway.api}/health", timeout=10).status_code == 200  # probes
    who = requests.get(f"{gateway.url}/gateway/whoami", auth=teammate, timeout=10).json()
    assert who == {"username": teammate[0], "role": "teammate", "work_queues": []}
    admin = requests.get(f"{gateway.url}/gateway/whoami", auth=gateway.admin, timeout=10).json()
    assert admin["role"] == "admin"


@pytest.mark.parametrize(
    "target",
    [
        "//x/api/admin/settings",
        "//api/admin/settings",
        "/api//admin/settings",
        "/api/./admin/settings",
        "/api/x/../admin/settings",
        "/api/%61dmin/settings",
        "/api/admin%2Fsettings",
        "/api/admin/settings/",
        "/x/%2e%2e/api/admin/settings",
        "/api/admin/settings?x=1",
    ],
)
def test_another_spelling_of_a_path_is_refused_not_forwarded(gateway, teammate, target):
    """Anonymous callers, and signed-in ones, never reach Prefect through a path read one way
    by the gateway and another by Prefect."""
    for account in (None, teammate):
        status, text = raw_request(gateway, "GET", target, account)
        assert status in (400, 401, 403, 404, 405), (target, status, text[:200])
        assert "PREFECT_API_DATABASE" not in text.upper() and '"server"' not in text


def test_the_ui_is_read_only_and_never_forwards_to_the_api(gateway):
    status, page = raw_request(gateway, "GET", "/")
    assert status == 200 and "<html" in page.lower()
    status, _ = raw_request(gateway, "POST", "/flows", body="{}")
    assert status == 405
    settings = requests.get(f"{gateway.url}/ui-settings", timeout=10).json()
    assert settings["auth"] == "BASIC"  # the UI asks who is calling
    assert "internal" not in json.dumps(settings)


ADMIN_ONLY_CALLS = [
    ("POST", "/deployments/", {"name": "mine", "flow_id": NO_SUCH_ID}),
    ("PATCH", f"/work_pools/{POOL}", {"concurrency_limit": 100}),
    ("POST", "/work_pools/", {"name": "my-own-pool", "type": "process"}),
    ("POST", "/automations/", {"name": "mine"}),
    ("POST", "/block_documents/", {"name": "mine"}),
    ("POST", "/variables/", {"name": "mine", "value": 1}),
    ("POST", "/v2/concurrency_limits/", {"name": "mine", "limit": 1}),
    ("GET", "/admin/settings", None),
    ("DELETE", f"/flow_runs/{NO_SUCH_ID}", None),
    ("POST", "/flow_runs/bulk_delete", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ONLY_CALLS)
def test_teammates_and_workers_may_not_change_the_platform(
    gateway, teammate, worker, method, path, body
):
    for account in (teammate, worker):
        answer = call(gateway, account, method, path, json=body)
        assert answer.status_code == 403, (account[0], answer.text)


def secret_block(gateway: Gateway) -> str:
    """A Secret block made by the admin; its document's id."""
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    name = f"secret-{secrets.token_hex(3)}"
    settings = {PREFECT_API_URL: gateway.api, PREFECT_API_AUTH_STRING: ":".join(gateway.admin)}
    with temporary_settings(settings):
        return str(Secret(value="the-secret-value").save(name))


@pytest.mark.parametrize("spelling", ["true", "True", "1", "yes", "on", "t", "y"])
def test_secret_values_of_blocks_are_for_admins_whatever_the_spelling(
    gateway, teammate, worker, spelling
):
    block = secret_block(gateway)
    for account in (teammate, worker):
        asked = call(
            gateway, account, "GET", f"/block_documents/{block}?include_secrets={spelling}"
        )
        assert asked.status_code == 403, (spelling, asked.text)
        filtered = call(
            gateway, account, "POST", "/block_documents/filter", json={"include_secrets": spelling}
        )
        assert filtered.status_code in (403, 422), filtered.text
        assert "the-secret-value" not in asked.text + filtered.text
        masked = call(gateway, account, "GET", f"/block_documents/{block}")
        assert masked.status_code == 200 and "the-secret-value" not in masked.text
    admin = call(gateway, gateway.admin, "GET", f"/block_documents/{block}?include_secrets=true")
    assert "the-secret-value" in admin.text


def test_the_notification_webhooks_url_is_kept_as_a_secret(gateway, teammate):
    """The URL that posts to a team's chat is a secret (anyone holding it posts there)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from infra.prefect.automations import webhook_block

    url = f"https://hooks.example.org/services/{secrets.token_hex(8)}"
    settings = {PREFECT_API_URL: gateway.api, PREFECT_API_AUTH_STRING: ":".join(gateway.admin)}
    with temporary_settings(settings):
        block_id = webhook_block(url)
    shown = call(gateway, teammate, "GET", f"/block_documents/{block_id}")
    assert (
        shown.status_code == 200 and url not in shown.text and "hooks.example.org" not in shown.text
    )


def test_a_teammate_starts_declared_runs_and_only_those(gateway, teammate, deployments):
    run = f"/deployments/{deployments.default}/create_flow_run"
    with_command = {"parameters": {}, "job_variables": {"command": "sh -c 'id'"}}
    refused = call(gateway, teammate, "POST", run, json=with_command)
    assert refused.status_code == 403 and "job_variables" in refused.json()["detail"]
    other_queue = call(gateway, teammate, "POST", run, json={"work_queue_name": "in-stack"})
    assert other_queue.status_code == 403
    unchecked = {"parameters": {}, "enforce_parameter_schema": False}
    assert call(gateway, teammate, "POST", run, json=unchecked).status_code == 403
    as_automation = call(
        gateway, teammate, "POST", run, json={}, headers={"Prefect-Automation-ID": NO_SUCH_ID}
    )
    assert as_automation.status_code == 403
    wrong_type = call(gateway, teammate, "POST", run, json={"parameters": {"value": "x"}})
    assert wrong_type.status_code == 409  # Prefect checks the declared parameters itself

    forged = {"parameters": {"value": 2}, "tags": ["started-by:someone-else", "mine"]}
    started = call(gateway, teammate, "POST", run, json=forged)

    assert started.status_code == 201, started.text
    tags = started.json()["tags"]
    assert f"started-by:{teammate[0]}" in tags and "mine" in tags
    assert "started-by:someone-else" not in tags


def test_a_teammate_cancels_and_retries_but_sets_no_other_state(gateway, teammate, deployments):
    run = f"/deployments/{deployments.default}/create_flow_run"
    flow_run_id = call(gateway, gateway.admin, "POST", run, json={}).json()["id"]
    set_state = f"/flow_runs/{flow_run_id}/set_state"

    completed = {"state": {"type": "COMPLETED"}, "force": True}
    assert call(gateway, teammate, "POST", set_state, json=completed).status_code == 403
    running = {"state": {"type": "RUNNING"}}
    assert call(gateway, teammate, "POST", set_state, json=running).status_code == 403
    early_retry = {"state": {"type": "SCHEDULED", "name": "Scheduled"}, "force": True}
    assert call(gateway, teammate, "POST", set_state, json=early_retry).status_code == 403
    cancel = {"state": {"type": "CANCELLED"}}
    assert call(gateway, teammate, "POST", set_state, json=cancel).status_code in (200, 201)
    # `prefect flow-run retry`: a run that ended scheduled again, forced.
    retry = {"state": {"type": "SCHEDULED", "name": "Scheduled"}, "force": True}
    assert call(gateway, teammate, "POST", set_state, json=retry).status_code in (200, 201)
    assert call(gateway, teammate, "GET", f"/flow_runs/{flow_run_id}").json()["state_type"] == (
        "SCHEDULED"
    )
    call(gateway, gateway.admin, "POST", set_state, json={"state": {"type": "CANCELLED"}})


def in_stack_run(gateway: Gateway, deployments) -> str:
    """A flow run on the stack's own queue, made by the admin."""
    run = f"/deployments/{deployments.in_stack}/create_flow_run"
    made = call(gateway, gateway.admin, "POST", run, json={})
    made.raise_for_status()
    return str(made.json()["id"])


def test_a_worker_runs_no_command_on_the_stack(gateway, worker, deployments):
    """No job variables, no queue, no deployment of its own, whichever route: the stack's worker
    runs with the S3 root key and the stack's account."""
    command = {"command": "sh -c 'touch /tmp/owned'"}
    created = call(
        gateway, worker, "POST", "/flow_runs/",
        json={"flow_id": NO_SUCH_ID, "deployment_id": deployments.in_stack,
              "work_queue_name": "in-stack", "job_variables": command},
    )  # fmt: skip
    assert created.status_code == 403, created.text
    started = call(
        gateway, worker, "POST", f"/deployments/{deployments.in_stack}/create_flow_run",
        json={"job_variables": command, "work_queue_name": "in-stack"},
    )  # fmt: skip
    assert started.status_code == 403, started.text
    plain = call(
        gateway, worker, "POST", f"/deployments/{deployments.in_stack}/create_flow_run", json={}
    )
    assert plain.status_code == 403, "a worker starts the stack's deployments from no flow of its"
    updated = call(
        gateway, worker, "PATCH", f"/flow_runs/{in_stack_run(gateway, deployments)}",
        json={"job_variables": command},
    )  # fmt: skip
    assert updated.status_code == 403


def test_a_worker_changes_only_its_own_runs_as_prefect_has_them(gateway, worker, deployments):
    theirs = in_stack_run(gateway, deployments)
    now = datetime.now(UTC).isoformat()
    log = {"name": "x", "level": 20, "message": "forged", "timestamp": now, "flow_run_id": theirs}
    artifact = {"type": "markdown", "data": "forged", "flow_run_id": theirs}
    attempts = [
        ("PATCH", f"/flow_runs/{theirs}/labels", {"forged": "yes"}),
        ("POST", f"/flow_runs/{theirs}/set_state", {"state": {"type": "CANCELLED"}}),
        ("POST", "/logs/", [log]),
        ("POST", "/artifacts/", artifact),
        ("POST", "/task_runs/", {"name": "t", "task_key": "k", "dynamic_key": "0",
                                 "flow_run_id": theirs}),
        ("POST", "/flow_runs/", {"flow_id": NO_SUCH_ID, "parent_task_run_id": NO_SUCH_ID}),
    ]  # fmt: skip
    for method, path, body in attempts:
        answer = call(gateway, worker, method, path, json=body)
        assert answer.status_code == 403, (method, path, answer.text)
    logs = call(gateway, gateway.admin, "POST", "/logs/filter",
                json={"logs": {"flow_run_id": {"any_": [theirs]}}}).json()  # fmt: skip
    assert not [line for line in logs if line["message"] == "forged"]


def test_events_are_no_control_channel(gateway, worker, teammate, deployments):
    """The events that start the stack's deployments (a monitoring breach) and state changes come
    from the stack only; a teammate emits none."""
    breach = {
        "event": "taxi.monitoring.breach",
        "resource": {"prefect.resource.id": "taxi.model.taxi-trip-duration.1",
                     "taxi.month": "2021-01", "taxi.source": "batch"},
        "occurred": datetime.now(UTC).isoformat(),
        "id": str(uuid.uuid4()),
    }  # fmt: skip
    crashed = {
        **breach,
        "event": "prefect.flow-run.Crashed",
        "resource": {
            "prefect.resource.id": f"prefect.flow-run.{in_stack_run(gateway, deployments)}"
        },
        "id": str(uuid.uuid4()),
    }
    for event in (breach, crashed):
        assert call(gateway, worker, "POST", "/events", json=[event]).status_code == 403
        closed = open_socket(gateway, "/events/in", ":".join(worker), event)
        assert "1008" in str(closed), closed
    assert "1008" in str(open_socket(gateway, "/events/in", ":".join(teammate)))


def test_the_worker_channel_joins_only_the_workers_own_queues(gateway, worker):
    def hello(**payload) -> dict:
        return {
            "type": "worker.hello.v1",
            "payload": {
                "consumer_id": str(uuid.uuid4()),
                "worker_name": worker[0],
                "worker_type": "process",
                "heartbeat_interval_seconds": 30,
                "supported_channel_versions": ["work-pool-worker.v1"],
                "requested_capabilities": ["heartbeat"],
                "work_queue_names": ["default"],
                **payload,
            },
        }

    path = f"/work_pools/{POOL}/workers/connect"
    token = ":".join(worker)
    for refused in (
        hello(work_queue_names=["in-stack"]),
        hello(work_queue_names=[]),
        hello(create_pool_if_not_found=True),
        hello(worker_name="someone-else"),
    ):
        assert "1008" in str(open_socket(gateway, path, token, refused)), refused
    assert "1008" in str(open_socket(gateway, "/work_pools/other-pool/workers/connect", token,
                                     hello()))  # fmt: skip


def test_an_open_websocket_is_closed_once_its_account_is_revoked(gateway):
    account = make_worker(gateway, f"gone-{secrets.token_hex(3)}")
    base = gateway.api.replace("http://", "ws://")
    with websocket_connect(f"{base}/logs/out", subprotocols=["prefect"]) as socket:  # type: ignore[list-item]
        socket.send(json.dumps({"type": "auth", "token": ":".join(account)}))
        assert json.loads(socket.recv(timeout=10)) == {"type": "auth_success"}
        socket.send(json.dumps({"type": "filter", "filter": {}}))
        deleted = requests.delete(
            f"{gateway.accounts_url}/api/2.0/mlflow/users/delete",
            json={"username": account[0]},
            auth=gateway.admin,
            timeout=30,
        )
        deleted.raise_for_status()
        started = time.monotonic()
        with pytest.raises(Exception) as closed:  # noqa: PT011 (websockets' ConnectionClosed)
            while True:
                socket.recv(timeout=CACHE_TTL_S * 2 + 10)
        assert time.monotonic() - started < CACHE_TTL_S * 2 + 10
        assert "1008" in str(closed.value)


def test_wrong_passwords_never_lock_out_a_right_one(gateway):
    """300 wrong passwords for one account from one address: every other account signs in, and
    that account too from another address (the TLS proxy names the client)."""
    target, other = (create_account(gateway, f"t-{secrets.token_hex(3)}") for _ in range(2))
    session = requests.Session()

    def sign_in(account: tuple[str, str], address: str) -> int:
        answer = session.post(
            f"{gateway.api}/flows/filter",
            json={},
            headers={"X-Forwarded-For": address},
            auth=account,
            timeout=30,
        )
        return answer.status_code

    attacker = "203.0.113.7"
    for _ in range(300):
        sign_in((target[0], "wrong"), attacker)
    assert sign_in((target[0], "still-wrong"), attacker) == 429
    assert sign_in(other, attacker) == 200
    assert sign_in(target, "198.51.100.20") == 200
    assert sign_in(other, "198.51.100.20") == 200
    # The target's password was right lately: it passes the brake on the attacker's address too.
    assert sign_in(target, attacker) == 200


def test_a_real_worker_runs_a_flow_through_the_gateway_with_its_own_account(
    gateway, worker, teammate, deployments, workdir
):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    # The teammate starts the run with Prefect's own client, as `python -m flows.cli` does.
    as_teammate = {PREFECT_API_URL: gateway.api, PREFECT_API_AUTH_STRING: ":".join(teammate)}
    with temporary_settings(as_teammate):
        flow_run = run_deployment(deployments.default, parameters={"value": 3}, timeout=0)
    assert f"started-by:{teammate[0]}" in flow_run.tags
    before = audit_entries(gateway, worker[0])
    env = {
        **os.environ,
        "PREFECT_API_URL": gateway.api,
        "PREFECT_API_AUTH_STRING": ":".join(worker),
        "PREFECT_HOME": str(workdir / f"prefect-home-{worker[0]}"),
    }
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type",
               "process", "--work-queue", "default", "--name", worker[0],
               "--no-create-pool-if-not-found", "--run-once"]  # fmt: skip
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    output = finished.stdout[-4000:] + finished.stderr[-4000:]

    ended = call(gateway, teammate, "GET", f"/flow_runs/{flow_run.id}").json()
    assert ended["state_type"] == "COMPLETED", output
    seen = {entry["id"] for entry in before}
    written = [entry for entry in audit_entries(gateway, worker[0]) if entry["id"] not in seen]
    refusals = [f"{e['method']} {e['path']}: {e['detail']}" for e in written if e["status"] == 403]
    assert not refusals, refusals
    assert any(e["path"].endswith("/set_state") for e in written)  # its writes are on record
    artifacts = call(gateway, teammate, "POST", "/artifacts/filter", json={}).json()
    assert any(a["flow_run_id"] == str(flow_run.id) for a in artifacts)


def test_every_write_is_in_an_append_only_audit_log(gateway, teammate, deployments):
    marker = f"audited-{secrets.token_hex(3)}"
    call(gateway, teammate, "POST", "/variables/", json={"name": marker, "value": 1})
    run = f"/deployments/{deployments.default}/create_flow_run"
    call(gateway, teammate, "POST", run, json={"parameters": {"value": 1}, "name": marker})

    assert (
        requests.get(f"{gateway.url}/gateway/audit", auth=teammate, timeout=10).status_code == 403
    )
    entries = audit_entries(gateway, teammate[0])
    refused = [e for e in entries if e["path"] == "/api/variables/" and e["status"] == 403]
    assert refused and "teammates may not" in refused[0]["detail"]["refused"]
    started = [e for e in entries if e["detail"].get("name") == marker]
    assert started and started[0]["status"] == 201 and started[0]["role"] == "teammate"

    database = gateway.database
    connection = psycopg2.connect(
        host="127.0.0.1",
        port=int(database["port"]),
        user=database["user"],
        password=database["password"],
        dbname="gateway",
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        for statement in ("UPDATE gateway_audit SET status = 200", "DELETE FROM gateway_audit"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cursor.execute(statement)
    connection.close()


def test_a_deleted_account_is_refused_within_the_cache_ttl(gateway):
    account = make_worker(gateway, f"gone-{secrets.token_hex(3)}")
    assert call(gateway, account, "POST", "/flows/filter", json={}).status_code == 200
    deleted = requests.delete(
        f"{gateway.accounts_url}/api/2.0/mlflow/users/delete",
        json={"username": account[0]},
        auth=gateway.admin,
        timeout=30,
    )
    deleted.raise_for_status()

    started = time.monotonic()
    while call(gateway, account, "POST", "/flows/filter", json={}).status_code != 401:
        assert time.monotonic() - started < CACHE_TTL_S + 5, "the deleted account still works"
        time.sleep(0.5)
