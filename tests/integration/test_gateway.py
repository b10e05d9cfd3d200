"""The Prefect gateway on real servers: MLflow's accounts (a basic-auth MLflow server), a Prefect
server, the gateway's own PostgreSQL tables made by the stack's init script, a real worker and a
real flow run through it. Each thing a role must not do is tried, and refused."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import requests
from websockets.sync.client import connect as websocket_connect

from tests import servers
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.integration

NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"
CACHE_TTL_S = 2  # short, so revocation is seen within the test
POOL = "gateway-pool"


@dataclass
class Gateway:
    """The gateway's URL, its database, the accounts server and an admin."""

    url: str
    accounts_url: str
    admin: tuple[str, str]
    database: dict[str, str]
    accounts: servers.AccountsServer

    @property
    def api(self) -> str:
        return f"{self.url}/api"


def run_init_script(postgres: servers.Postgres) -> dict[str, str]:
    """The stack's postgres-init script, as compose runs it; the gateway role's settings."""
    suffix = secrets.token_hex(3)
    gateway_user, gateway_password = f"gateway_{suffix}", secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "PATH": f"{servers.postgres_bindir()}:{os.environ['PATH']}",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres.port),
        "PGUSER": "postgres",
        "PGPASSWORD": postgres.password,
        "MLFLOW_DB_USER": f"mlflow_{suffix}",
        "MLFLOW_DB_PASSWORD": secrets.token_urlsafe(16),
        "PREFECT_DB_USER": f"prefect_{suffix}",
        "PREFECT_DB_PASSWORD": secrets.token_urlsafe(16),
        "GATEWAY_DB_USER": gateway_user,
        "GATEWAY_DB_PASSWORD": gateway_password,
    }
    script = ["bash", str(REPO_ROOT / "infra/postgres/init-databases.sh")]
    subprocess.run(script, env=env, check=True, capture_output=True)
    return {"user": gateway_user, "password": gateway_password, "port": str(postgres.port)}


@pytest.fixture(scope="module")
def gateway(postgres, accounts, prefect_server, workdir) -> Iterator[Gateway]:
    """The gateway as compose runs it (`python -m services.gateway`), in front of Prefect,
    signing in with the stack's tracking server's accounts."""
    database = run_init_script(postgres)
    internal = "internal:" + secrets.token_urlsafe(16)
    tracking = accounts.tracking
    url, process = servers.start_gateway(
        prefect_server.api_url, internal, tracking.url, database, workdir, CACHE_TTL_S
    )
    yield Gateway(url, tracking.url, tracking.admin, database, tracking)
    servers.stop_process(process)


def create_account(gateway: Gateway, name: str) -> tuple[str, str]:
    """A new MLflow account (what `make user` does)."""
    return gateway.accounts.create_account(name)


def make_worker(gateway: Gateway, name: str) -> tuple[str, str]:
    """A worker account on the default queue (what `make worker-env` does)."""
    recorded = requests.put(
        f"{gateway.url}/gateway/workers/{name}",
        json={"work_queues": ["default"]},
        auth=gateway.admin,
        timeout=30,
    )
    recorded.raise_for_status()
    return create_account(gateway, name)


@pytest.fixture(scope="module")
def teammate(gateway) -> tuple[str, str]:
    return create_account(gateway, f"alice-{secrets.token_hex(3)}")


@pytest.fixture(scope="module")
def worker(gateway) -> tuple[str, str]:
    return make_worker(gateway, f"laptop-{secrets.token_hex(3)}")


@pytest.fixture(scope="module")
def deployment(gateway, prefect_server) -> dict[str, str]:
    """A work pool and a deployment of tests/integration/gateway_flow, made by the admin
    through the gateway with Prefect's own client."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    async def create() -> str:
        async with get_client() as client:
            with contextlib.suppress(ObjectAlreadyExists):  # made by an earlier module's run
                await client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
            flow_id = await client.create_flow_from_name("gateway-check")
            deployment_id = await client.create_deployment(
                flow_id=flow_id,
                name=f"gateway-check-{uuid.uuid4().hex[:6]}",
                work_pool_name=POOL,
                work_queue_name="default",
                # The flow's own folder: the worker copies it into each run's directory.
                path=str(REPO_ROOT / "tests/integration/gateway_flow"),
                entrypoint="check.py:gateway_check",
                parameter_openapi_schema={
                    "type": "object",
                    "properties": {"value": {"type": "integer"}},
                },
                enforce_parameter_schema=True,
            )
            return str(deployment_id)

    settings = {PREFECT_API_URL: gateway.api, PREFECT_API_AUTH_STRING: ":".join(gateway.admin)}
    with temporary_settings(settings):
        deployment_id = asyncio.run(create())
    return {"id": deployment_id}


def call(gateway: Gateway, account, method: str, path: str, **kwargs) -> requests.Response:
    """One API call through the gateway as ``account`` (None: anonymous)."""
    return requests.request(method, f"{gateway.api}{path}", auth=account, timeout=30, **kwargs)


def test_callers_sign_in_with_their_mlflow_account(gateway, teammate):
    assert call(gateway, None, "POST", "/flows/filter", json={}).status_code == 401
    wrong = (teammate[0], "not-the-password")
    assert call(gateway, wrong, "POST", "/flows/filter", json={}).status_code == 401
    assert call(gateway, teammate, "POST", "/flows/filter", json={}).status_code == 200
    assert requests.get(f"{gateway.api}/health", timeout=10).status_code == 200  # probes
    who = requests.get(f"{gateway.url}/gateway/whoami", auth=teammate, timeout=10).json()
    assert who == {"username": teammate[0], "role": "teammate", "work_queues": []}
    admin = requests.get(f"{gateway.url}/gateway/whoami", auth=gateway.admin, timeout=10).json()
    assert admin["role"] == "admin"


ADMIN_ONLY_CALLS = [
    ("POST", "/deployments/", {"name": "mine", "flow_id": NO_SUCH_ID}),
    ("PATCH", f"/work_pools/{POOL}", {"concurrency_limit": 100}),
    ("POST", "/work_pools/", {"name": "my-own-pool", "type": "process"}),
    ("POST", "/automations/", {"name": "mine"}),
    ("POST", "/block_documents/", {"name": "mine"}),
    ("POST", "/variables/", {"name": "mine", "value": 1}),
    ("POST", "/v2/concurrency_limits/", {"name": "mine", "limit": 1}),
    # Fixed ids: pytest-xdist's processes must collect the same test names.
    ("DELETE", f"/flow_runs/{NO_SUCH_ID}", None),
    ("POST", "/flow_runs/bulk_delete", {}),
]


def test_paths_that_resolve_elsewhere_are_refused(gateway, teammate):
    # http.client sends the path as given (requests would resolve the dots itself).
    import http.client

    host, port = gateway.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    token = base64.b64encode(":".join(teammate).encode()).decode()
    connection.request(
        "POST",
        "/api/flow_runs/x/../../deployments/",
        body="{}",
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    assert connection.getresponse().status == 400


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ONLY_CALLS)
def test_teammates_and_workers_may_not_change_the_platform(
    gateway, teammate, worker, deployment, method, path, body
):
    for account in (teammate, worker):
        answer = call(gateway, account, method, path, json=body)
        assert answer.status_code == 403, (account[0], answer.text)
    assert call(gateway, gateway.admin, "POST", "/deployments/filter", json={}).status_code == 200


def test_a_teammate_starts_declared_runs_and_only_those(gateway, teammate, worker, deployment):
    run = f"/deployments/{deployment['id']}/create_flow_run"
    with_command = {"parameters": {}, "job_variables": {"command": "sh -c 'id'"}}
    for account in (teammate, worker):
        refused = call(gateway, account, "POST", run, json=with_command)
        assert refused.status_code == 403 and "job variables" in refused.json()["detail"]
    other_queue = call(gateway, teammate, "POST", run, json={"work_queue_name": "in-stack"})
    assert other_queue.status_code == 403
    unchecked = {"parameters": {}, "enforce_parameter_schema": False}
    assert call(gateway, teammate, "POST", run, json=unchecked).status_code == 403
    wrong_type = call(gateway, teammate, "POST", run, json={"parameters": {"value": "x"}})
    assert wrong_type.status_code == 409  # Prefect checks the declared parameters itself

    forged = {"parameters": {"value": 2}, "tags": ["started-by:someone-else", "mine"]}
    started = call(gateway, teammate, "POST", run, json=forged)

    assert started.status_code == 201, started.text
    tags = started.json()["tags"]
    assert f"started-by:{teammate[0]}" in tags and "mine" in tags
    assert "started-by:someone-else" not in tags


def test_a_teammate_cancels_and_retries_but_sets_no_other_state(gateway, teammate, deployment):
    run = f"/deployments/{deployment['id']}/create_flow_run"
    flow_run_id = call(gateway, gateway.admin, "POST", run, json={}).json()["id"]
    set_state = f"/flow_runs/{flow_run_id}/set_state"

    completed = {"state": {"type": "COMPLETED"}, "force": True}
    assert call(gateway, teammate, "POST", set_state, json=completed).status_code == 403
    cancel = {"state": {"type": "CANCELLING"}}
    assert call(gateway, teammate, "POST", set_state, json=cancel).status_code in (200, 201)
    retry = {"state": {"type": "SCHEDULED", "name": "AwaitingRetry"}, "force": True}
    assert call(gateway, teammate, "POST", set_state, json=retry).status_code in (200, 201)
    assert call(gateway, teammate, "GET", f"/flow_runs/{flow_run_id}").json()["state_type"] in (
        "SCHEDULED",
        "CANCELLED",
        "CANCELLING",
    )
    cancel_anyway = {"state": {"type": "CANCELLED"}, "force": True}
    call(gateway, gateway.admin, "POST", set_state, json=cancel_anyway)


def test_a_worker_polls_only_its_own_queues(gateway, worker, teammate):
    poll = f"/work_pools/{POOL}/get_scheduled_flow_runs"
    assert call(gateway, worker, "POST", poll, json={"work_queue_names": ["default"]}).ok
    for names in (["in-stack"], ["default", "in-stack"], []):
        answer = call(gateway, worker, "POST", poll, json={"work_queue_names": names})
        assert answer.status_code == 403, names
    assert (
        call(gateway, teammate, "POST", poll, json={"work_queue_names": ["default"]}).status_code
        == 403
    )
    heartbeat = f"/work_pools/{POOL}/workers/heartbeat"
    assert call(gateway, teammate, "POST", heartbeat, json={"name": "fake"}).status_code == 403


def test_a_real_worker_runs_a_flow_through_the_gateway_with_its_own_account(
    gateway, worker, teammate, deployment
):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    # The teammate starts the run with Prefect's own client, as `python -m flows.cli` does.
    as_teammate = {PREFECT_API_URL: gateway.api, PREFECT_API_AUTH_STRING: ":".join(teammate)}
    with temporary_settings(as_teammate):
        flow_run = run_deployment(deployment["id"], parameters={"value": 3}, timeout=0)
    assert f"started-by:{teammate[0]}" in flow_run.tags
    before = audit_entries(gateway, worker[0])
    env = {
        **os.environ,
        "PREFECT_API_URL": gateway.api,
        "PREFECT_API_AUTH_STRING": ":".join(worker),
        "PREFECT_HOME": str(Path(os.environ.get("TMPDIR", "/tmp")) / f"gw-{worker[0]}"),
    }
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL]
    command += ["--type", "process", "--work-queue", "default", "--run-once"]
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


def audit_entries(gateway: Gateway, username: str) -> list[dict]:
    """The audit log's entries of one account, as the admin reads them."""
    answer = requests.get(
        f"{gateway.url}/gateway/audit",
        params={"username": username, "limit": 10_000},
        auth=gateway.admin,
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()


def test_websockets_sign_in_with_the_account_and_follow_the_roles(gateway, teammate, worker):
    base = gateway.api.replace("http://", "ws://")

    def open_socket(path: str, token: str) -> dict | str:
        with websocket_connect(f"{base}{path}", subprotocols=["prefect"]) as socket:  # type: ignore[list-item]
            socket.send(json.dumps({"type": "auth", "token": token}))
            try:
                return json.loads(socket.recv(timeout=10))
            except Exception as closed:  # noqa: BLE001 (a refusal closes the socket)
                return str(closed)

    assert open_socket("/logs/out", ":".join(teammate)) == {"type": "auth_success"}
    assert open_socket("/events/in", ":".join(worker)) == {"type": "auth_success"}
    refused = open_socket("/events/in", ":".join(teammate))
    assert "1008" in refused and "teammates may not open" in refused
    assert "1008" in open_socket("/logs/out", f"{teammate[0]}:wrong")


def test_every_write_is_in_an_append_only_audit_log(gateway, teammate, deployment):
    marker = f"audited-{secrets.token_hex(3)}"
    call(gateway, teammate, "POST", "/variables/", json={"name": marker, "value": 1})
    run = f"/deployments/{deployment['id']}/create_flow_run"
    call(gateway, teammate, "POST", run, json={"parameters": {"value": 1}, "name": marker})

    assert (
        requests.get(f"{gateway.url}/gateway/audit", auth=teammate, timeout=10).status_code == 403
    )
    entries = requests.get(
        f"{gateway.url}/gateway/audit",
        params={"username": teammate[0], "limit": 1000},
        auth=gateway.admin,
        timeout=30,
    ).json()
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
