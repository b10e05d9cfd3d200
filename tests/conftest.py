"""Session fixtures: real servers started once and shared by the integration tests."""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path

import pytest

from tests import servers, shared
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
    """This test process's logs and state, kept by pytest for a look after a failure."""
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory) -> Path:
    """The folder every test process of this run shares: the shared servers' handles, locks and
    logs (tests/shared.py)."""
    folder = shared.run_folder(tmp_path_factory.getbasetemp())
    (folder / "shared-servers").mkdir(exist_ok=True)
    return folder


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run's main process stops the servers its test processes shared, at the very end."""
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the other one may still be using them
    base = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    shared.stop_everything(base)


@pytest.fixture(scope="session")
def postgres(run_folder) -> servers.Postgres:
    """A throwaway PostgreSQL cluster from the machine's binaries, with MLflow's template."""

    def start() -> servers.Postgres:
        cluster = servers.start_postgres()
        shared.cluster_on_record(run_folder, cluster)
        cluster.mlflow_template()
        return cluster

    return shared.shared(run_folder, "postgres", start)


@pytest.fixture(scope="session")
def s3(run_folder) -> servers.S3Server:
    """A local S3-compatible server."""

    def start() -> servers.S3Server:
        server = servers.start_s3(run_folder / "shared-servers")
        shared.on_record(run_folder, server.pid)
        return server

    return shared.shared(run_folder, "s3", start)


@pytest.fixture(scope="session")
def platform_servers(
    postgres, s3, run_folder
) -> tuple[servers.MlflowServer, servers.PrefectServer]:
    """MLflow (artifacts proxied to the S3 server) and Prefect, both on PostgreSQL, started side
    by side: each spends most of its start migrating a new database."""

    def start() -> tuple[servers.MlflowServer, servers.PrefectServer]:
        from concurrent.futures import ThreadPoolExecutor

        logs = run_folder / "shared-servers"
        bucket = "mlflow-artifacts"
        s3.client().create_bucket(Bucket=bucket)
        mlflow_db = f"postgresql+psycopg2://{postgres.create_mlflow_database('mlflow', token())}"
        prefect_db = f"postgresql+asyncpg://{postgres.create_database('prefect', token())}"
        with ThreadPoolExecutor(2) as pool:
            mlflow = pool.submit(servers.start_mlflow, mlflow_db, s3, bucket, logs)
            # With the stack's vacuum of old flow runs and its metrics (test_housekeeping.py,
            # test_metrics.py).
            settings = servers.compose_prefect_settings() | servers.UNUSED_PREFECT_SERVICES
            prefect = pool.submit(servers.start_prefect, prefect_db, logs, settings)
        for future in (mlflow, prefect):
            if future.exception() is None:
                shared.on_record(run_folder, future.result().pid)
        return mlflow.result(), prefect.result()

    return shared.shared(run_folder, "platform", start)


@pytest.fixture(scope="session")
def accounts(postgres, s3, run_folder) -> servers.Accounts:
    """The stack's servers with MLflow's accounts, as compose runs them: the tracking server (the
    stack-registry app, for the platform's model) and the data proxy on one accounts database, and
    the stack's own account. The modules that test their rules (the registry's, the gateway's, the
    data proxy's, housekeeping's, metrics') share them."""

    def start() -> servers.Accounts:
        logs = run_folder / "shared-servers"
        both = servers.start_accounts(postgres, s3, logs, STACK_ACCOUNT, PLATFORM_MODEL)
        for server in (both.tracking, both.data_proxy):
            shared.on_record(run_folder, server.pid)
        return both

    return shared.shared(run_folder, "accounts", start)


@pytest.fixture(scope="session")
def stack_tracking(accounts) -> tuple[servers.AccountsServer, tuple[str, str]]:
    """The stack's tracking server and the stack's own account."""
    return accounts.tracking, accounts.stack


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
