"""Session fixtures: real servers started once and shared by the integration tests."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers
from tests.paths import TLC_DATA

# The platform's model and the stack's worker account, as docker-compose.yml names them.
PLATFORM_MODEL, STACK_ACCOUNT = "taxi-trip-duration", "prefect-worker"

# Flows read explicit paths only from the data store (flows/logic/locations.py): here, the TLC
# copies; each test adds its own tmp_path (`data_dirs`), never a wider folder such as the temp
# folder, which may hold the checkout itself. Processes the tests start inherit it.
os.environ["LOCAL_DATA_DIRS"] = str(TLC_DATA)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest process per core: a process that also ran one OpenMP thread per
    # core (xgboost's default) would oversubscribe them, and OpenMP's waiting threads spin,
    # burning the other process's CPU. Set before anything loads OpenMP.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def data_dirs(tmp_path, monkeypatch) -> None:
    """The data store's local folders for this test: the TLC copies and the test's own files."""
    monkeypatch.setenv("LOCAL_DATA_DIRS", os.pathsep.join([str(TLC_DATA), str(tmp_path)]))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    """Logs and state of the servers, kept by pytest for a look after a failure."""
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def postgres() -> Iterator[servers.Postgres]:
    """A throwaway PostgreSQL cluster from the machine's binaries."""
    server = servers.start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3(workdir: Path) -> Iterator[servers.S3Server]:
    """A local S3-compatible server."""
    server = servers.start_s3(workdir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def platform_servers(
    postgres, s3, workdir
) -> Iterator[tuple[servers.MlflowServer, servers.PrefectServer]]:
    """MLflow (artifacts proxied to the S3 server) and Prefect, both on PostgreSQL, started side
    by side: each spends most of its start migrating a new database."""
    from concurrent.futures import ThreadPoolExecutor

    bucket = "mlflow-artifacts"
    s3.client().create_bucket(Bucket=bucket)
    mlflow_db = f"postgresql+psycopg2://{postgres.create_mlflow_database('mlflow', token())}"
    prefect_db = f"postgresql+asyncpg://{postgres.create_database('prefect', token())}"
    with ThreadPoolExecutor(2) as pool:
        starting = [
            pool.submit(servers.start_mlflow, mlflow_db, s3, bucket, workdir),
            # With the stack's vacuum of old flow runs and its metrics (test_housekeeping.py,
            # test_metrics.py).
            pool.submit(
                servers.start_prefect, prefect_db, workdir, servers.compose_prefect_settings()
            ),
        ]
    try:
        mlflow, prefect = (future.result() for future in starting)
        yield mlflow, prefect
    finally:
        for future in starting:
            if future.exception() is None:
                future.result().stop()


@pytest.fixture(scope="session")
def stack_tracking(
    postgres, s3, workdir
) -> Iterator[tuple[servers.AccountsServer, tuple[str, str]]]:
    """The stack's tracking server as compose runs it (the stack-registry app, accounts) for the
    platform's model, shared by the modules that test its rules, and the stack's own account."""
    import requests

    bucket = f"registry-{secrets.token_hex(3)}"
    s3.client().create_bucket(Bucket=bucket)
    server = servers.start_tracking_with_accounts(
        postgres, s3, bucket, workdir, STACK_ACCOUNT, PLATFORM_MODEL
    )
    stack = (STACK_ACCOUNT, secrets.token_urlsafe(16))
    created = requests.post(
        f"{server.url}/api/2.0/mlflow/users/create",
        json={"username": stack[0], "password": stack[1]},
        auth=server.admin,
        timeout=30,
    )
    created.raise_for_status()
    yield server, stack
    server.stop()


def token() -> str:
    """A fresh password for a test database."""
    return secrets.token_urlsafe(16)


@pytest.fixture(scope="session")
def mlflow_server(platform_servers) -> servers.MlflowServer:
    """An MLflow tracking server on PostgreSQL, artifacts proxied to the S3 server."""
    return platform_servers[0]


@pytest.fixture(scope="session")
def prefect_server(platform_servers) -> servers.PrefectServer:
    """A Prefect server on PostgreSQL."""
    return platform_servers[1]


@pytest.fixture
def tracking(mlflow_server, monkeypatch) -> str:
    """Point this test's MLflow client at the tracking server (and nothing else)."""
    import mlflow

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)  # clients need the URL only
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    mlflow.set_tracking_uri(mlflow_server.url)
    yield mlflow_server.url
    mlflow.set_tracking_uri(None)


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses, for experiments and registered models."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def prefect_api(prefect_server):
    """Run this test's flows against the Prefect server."""
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
        yield prefect_server.api_url
        APILogWorker.drain_all(timeout=10)  # ship the runs' logs while the server listens


@pytest.fixture(scope="session")
def tlc_site():
    """The TLC copies served over HTTP on 127.0.0.1, like the official CDN; counts GETs."""
    import functools
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(TLC_DATA))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
