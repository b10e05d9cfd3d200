"""The Prefect gateway on real servers, once per test process: MLflow's accounts (the stack's
tracking server), a Prefect server, the gateway's own tables made by the stack's init script, and
the accounts of each role. Its TLS proxy is this machine (127.0.0.1): a test names the client
address it stands for in X-Forwarded-For, as the proxy would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from tests import servers
from tests.paths import REPO_ROOT

POOL = "gateway-pool"
CACHE_TTL_S = 2  # short, so revocation is seen within the tests
NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"


@dataclass
class Gateway:
    """The gateway's URL, its database, the accounts server and an admin."""

    url: str
    accounts_url: str
    admin: tuple[str, str]
    database: dict[str, str]
    accounts: servers.AccountsServer
    prefect_api_url: str
    internal: str

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


@pytest.fixture(scope="session")
def gateway(postgres, accounts, prefect_server, workdir) -> Iterator[Gateway]:
    """The gateway as compose runs it (`python -m services.gateway`), in front of Prefect,
    signing in with the stack's tracking server's accounts; this machine is its TLS proxy."""
    database = run_init_script(postgres)
    # The Prefect server of the tests has no auth string: the gateway's is sent and ignored.
    internal = "internal:" + secrets.token_urlsafe(16)
    tracking = accounts.tracking
    url, process = servers.start_gateway(
        prefect_server.api_url, internal, tracking.url, database, workdir, CACHE_TTL_S,
        work_pool=POOL, trusted_proxies="127.0.0.1",
    )  # fmt: skip
    yield Gateway(
        url, tracking.url, tracking.admin, database, tracking, prefect_server.api_url, internal
    )
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


@pytest.fixture(scope="session")
def teammate(gateway) -> tuple[str, str]:
    return create_account(gateway, f"alice-{secrets.token_hex(3)}")


@pytest.fixture(scope="session")
def worker(gateway) -> tuple[str, str]:
    return make_worker(gateway, f"laptop-{secrets.token_hex(3)}")


@dataclass(frozen=True)
class Deployments:
    """Deployments of tests/security/gateway_flow on the pool: one on the workers' queue, one on
    the stack's own queue."""

    default: str
    in_stack: str


@pytest.fixture(scope="session")
def deployments(gateway) -> Deployments:
    """The pool (with the process worker's template, as the stack's job makes it) and a
    deployment on each queue, made by the admin through the gateway with Prefect's client."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    async def create() -> Deployments:
        async with get_client() as client:
            template = ProcessWorker.get_default_base_job_template()
            pool = WorkPoolCreate(name=POOL, type="process", base_job_template=template)
            with contextlib.suppress(ObjectAlreadyExists):
                await client.create_work_pool(pool)
            flow_id = await client.create_flow_from_name("gateway-check")
            made = {}
            for queue in ("default", "in-stack"):
                made[queue] = await client.create_deployment(
                    flow_id=flow_id,
                    name=f"gateway-check-{queue}-{secrets.token_hex(3)}",
                    work_pool_name=POOL,
                    work_queue_name=queue,
                    # The flow's own folder: the worker copies it into each run's directory.
                    path=str(REPO_ROOT / "tests/security/gateway_flow"),
                    entrypoint="check.py:gateway_check",
                    parameter_openapi_schema={
                        "type": "object",
                        "properties": {"value": {"type": "integer"}},
                    },
                    enforce_parameter_schema=True,
                )
            return Deployments(str(made["default"]), str(made["in-stack"]))

    settings = {PREFECT_API_URL: gateway.api, PREFECT_API_AUTH_STRING: ":".join(gateway.admin)}
    with temporary_settings(settings):
        return asyncio.run(create())


def call(gateway: Gateway, account, method: str, path: str, **kwargs) -> requests.Response:
    """One API call through the gateway as ``account`` (None: anonymous)."""
    return requests.request(method, f"{gateway.api}{path}", auth=account, timeout=30, **kwargs)


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


async def status_of(app, scope: dict, body: bytes) -> int:
    """The status an ASGI ``app`` answers ``scope`` with, its body ``body`` (the answer's own
    body is not kept)."""
    from platform_edge.answers import replay

    status = 0

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, replay(body), send)
    return status
