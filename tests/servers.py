"""Real servers for the integration tests: PostgreSQL, an S3 API, MLflow and Prefect as processes.

Each starter returns a handle and a ``stop`` callable; the fixtures in ``conftest.py`` own their
lifetimes. Nothing here is a mock: the MLflow and Prefect servers are the packages' own servers,
the database is the machine's PostgreSQL, and the S3 API is moto's HTTP server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import sql

from infra.waiting import wait_for_http
from tests.paths import REPO_ROOT


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout_s: float = 20) -> None:
    """Stop a server and its children (uvicorn workers) started in their own session."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def stop_group(pid: int, timeout_s: float = 20) -> None:
    """Stop the process group ``pid`` leads (a server started by ``start_logged``), from any
    process of the test run: its parent may be another test process, or gone."""
    import time

    def alive() -> bool:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # reaped: it was this process's child
                return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout_s
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not alive():
            return


def start_logged(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own process group with output to ``log_path``."""
    log = log_path.open("wb")
    return subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def serve_on_free_port(
    program: str,
    args: list[str],
    env: dict[str, str],
    log_path: Path,
    health_path: str,
    timeout_s: float,
) -> tuple[str, subprocess.Popen]:
    """Run a console script of this venv on a free 127.0.0.1 port, with environment ``env``,
    until ``health_path`` answers; return its base URL and process."""
    command = [str(Path(sys.executable).parent / program), *args]
    return serve_command_on_free_port(command, env, log_path, health_path, timeout_s)


def serve_command_on_free_port(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    health_path: str,
    timeout_s: float,
) -> tuple[str, subprocess.Popen]:
    """Run ``command`` with ``--host 127.0.0.1 --port <free port>`` appended until
    ``health_path`` answers; return its base URL and process."""
    port = free_port()
    cmd = [*command, "--host", "127.0.0.1", "--port", str(port)]
    process = start_logged(cmd, env, log_path)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}{health_path}", timeout_s, lambda: process.poll() is None)
    return url, process


# --- PostgreSQL ----------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    """The directory of the machine's PostgreSQL server binaries (Debian keeps them off PATH)."""
    if pg_ctl := shutil.which("pg_ctl"):
        return Path(pg_ctl).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
    return Path(candidates[-1]).parent


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster listening on 127.0.0.1."""

    port: int
    password: str
    datadir: Path
    run_as: list[str]
    bindir: Path
    user: str = "postgres"

    def connect(self, dbname: str = "postgres"):
        """A psycopg2 connection as the superuser."""
        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname=dbname
        )

    def create_database(self, name: str, owner_password: str) -> str:
        """Create role and database ``name``; return its SQLAlchemy URL without a driver."""
        conn = self.connect()
        conn.autocommit = True
        with conn.cursor() as cur:  # not `with conn`: that opens a transaction block
            cur.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(owner_password)
                )
            )
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(name)
                )
            )
        conn.close()
        return f"{name}:{owner_password}@127.0.0.1:{self.port}/{name}"

    def create_mlflow_database(self, name: str, owner_password: str) -> str:
        """Like ``create_database``, but already at MLflow's schema: a copy of a template made
        once per cluster. A new tracking database runs every MLflow migration (~20 s), most of
        a test server's start; PostgreSQL copies a template in well under a second."""
        template = self.mlflow_template()
        conn = self.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(owner_password)
                )
            )
            cur.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(template), sql.Identifier(name)
                )
            )
        conn.close()
        copy = self.connect(name)  # the copied tables still belong to the template's role
        copy.autocommit = True
        with copy.cursor() as cur:
            cur.execute(
                sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                    sql.Identifier(template), sql.Identifier(name)
                )
            )
        copy.close()
        return f"{name}:{owner_password}@127.0.0.1:{self.port}/{name}"

    def mlflow_template(self) -> str:
        """The database at MLflow's schema that tracking databases are copied from, made the
        first time (under the run's lock where test processes share the cluster)."""
        template = "mlflow_template"
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,))
            exists = cur.fetchone() is not None
        conn.close()
        if not exists:
            import sqlalchemy
            from mlflow.store.db.utils import _initialize_tables

            url = self.create_database(template, secrets.token_urlsafe(16))
            engine = sqlalchemy.create_engine(f"postgresql+psycopg2://{url}")
            _initialize_tables(engine)
            engine.dispose()  # a template may have no open connections while it is copied
        return template

    def stop(self) -> None:
        """Stop the cluster and delete its files."""
        subprocess.run(
            [
                *self.run_as,
                str(self.bindir / "pg_ctl"),
                "stop",
                "-D",
                str(self.datadir),
                "-m",
                "fast",
                "-w",
            ],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def start_postgres(password: str = "postgres-test-password") -> Postgres:
    """initdb and start a cluster; as root, run it as the `postgres` user (it refuses root)."""
    bindir = postgres_bindir()
    base = Path(tempfile.mkdtemp(prefix="pgtest-"))
    datadir, sockets = base / "data", base / "sockets"
    sockets.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        for path in (base, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    if run_as:
        os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
    subprocess.run(
        [
            *run_as,
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "start",
            "-D",
            str(datadir),
            "-w",
            "-l",
            str(base / "server.log"),
            "-o",
            options,
        ],
        check=True,
        capture_output=True,
    )
    return Postgres(port=port, password=password, datadir=datadir, run_as=run_as, bindir=bindir)


# --- S3 ------------------------------------------------------------------------------------------


@dataclass
class S3Server:
    """moto's S3-compatible HTTP server."""

    endpoint_url: str
    pid: int
    access_key_id: str = "test-access-key"
    secret_access_key: str = "test-secret-key"

    def client(self):
        """A boto3 client for this server."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name="us-east-1",
            config=Config(signature_version="s3v4"),
        )

    def env(self) -> dict[str, str]:
        """What a process needs in its environment to use this server."""
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def stop(self) -> None:
        stop_group(self.pid)


def start_s3(workdir: Path) -> S3Server:
    """Start moto's server (a separate process, as a real S3 endpoint would be)."""
    port = free_port()
    process = start_logged(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        dict(os.environ),
        workdir / "s3.log",
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/moto-api/", 30, lambda: process.poll() is None)
    return S3Server(endpoint_url=url, pid=process.pid)


# --- MLflow --------------------------------------------------------------------------------------


@dataclass
class MlflowServer:
    """``mlflow server`` with a PostgreSQL backend and artifacts proxied to S3."""

    url: str
    pid: int
    bucket: str

    def stop(self) -> None:
        stop_group(self.pid)


def launch_mlflow(
    backend_uri: str, destination: str, env: dict[str, str], workdir: Path
) -> tuple[str, subprocess.Popen]:
    """`mlflow server` with artifacts proxied to ``destination``, as the stack runs it."""
    env = {
        **os.environ,
        **env,
        "MLFLOW_BACKEND_STORE_URI": backend_uri,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # as in docker-compose.yml
    }
    args = [
        "server",
        "--workers",
        "1",
        "--serve-artifacts",
        f"--artifacts-destination={destination}",
    ]
    return serve_on_free_port("mlflow", args, env, workdir / "mlflow.log", "/health", 120)


def start_mlflow(backend_uri: str, s3: S3Server, bucket: str, workdir: Path) -> MlflowServer:
    """The tracking server on ``backend_uri`` with artifacts in ``bucket`` of the S3 server."""
    url, process = launch_mlflow(backend_uri, f"s3://{bucket}", s3.env(), workdir)
    return MlflowServer(url=url, pid=process.pid, bucket=bucket)


@dataclass
class AccountsServer:
    """An MLflow server with the stack's accounts (basic auth), started by the compose services'
    own script: the data proxy (``--artifacts-only`` over a bucket) or the tracking server."""

    url: str
    pid: int
    bucket: str
    admin: tuple[str, str]
    # The tracking database (user:password@host:port/name), for a tracking server.
    backend: str = ""
    # Its metrics (mlflow_platform_metrics, METRICS_PORT), for a tracking server.
    metrics_url: str = ""

    def create_account(self, username: str) -> tuple[str, str]:
        """A new ordinary account (what `make user` does); its (username, password)."""
        import requests

        account = (username, secrets.token_urlsafe(16))
        created = requests.post(
            f"{self.url}/api/2.0/mlflow/users/create",
            json={"username": account[0], "password": account[1]},
            auth=self.admin,
            timeout=30,
        )
        created.raise_for_status()
        return account

    def stop(self) -> None:
        stop_group(self.pid)


SERVING_ACCOUNT = "model-server"


@dataclass
class Accounts:
    """The stack's two servers with MLflow's accounts, on one accounts database as compose runs
    them: the tracking server (the stack-registry app) and the data proxy over a bucket of its
    own; an account made at either signs in at both."""

    tracking: AccountsServer
    data_proxy: AccountsServer
    stack: tuple[str, str]  # the stack's own worker account
    serving: tuple[str, str]  # the model server's account, which adds answered records

    def create_account(self, username: str) -> tuple[str, str]:
        """A new ordinary account (what `make user` does)."""
        return self.tracking.create_account(username)

    def stop(self) -> None:
        self.data_proxy.stop()
        self.tracking.stop()


def start_accounts(
    postgres: Postgres, s3: S3Server, workdir: Path, stack_account: str, model: str
) -> Accounts:
    """The tracking server and the data proxy, started side by side on an accounts database
    migrated (and given its admin) first, so neither races the other to make its tables."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    suffix = secrets.token_hex(3)
    artifacts, data = f"registry-{suffix}", f"proxied-{suffix}"
    for bucket in (artifacts, data):
        s3.client().create_bucket(Bucket=bucket)
    admin = ("admin", secrets.token_urlsafe(16))
    auth_db = f"postgresql+psycopg2://{accounts_database(postgres, admin)}"
    empty_store = empty_tracking_store(workdir)
    with ThreadPoolExecutor(2) as pool:
        tracking = pool.submit(
            start_tracking_with_accounts, postgres, s3, artifacts, workdir, stack_account, model,
            auth_db, admin,
        )  # fmt: skip
        proxy = pool.submit(start_data_proxy, s3, data, workdir, auth_db, admin, empty_store)
    server = tracking.result()
    made = []
    for name in (stack_account, SERVING_ACCOUNT):  # what the mlflow-users job makes
        account = (name, secrets.token_urlsafe(16))
        created = requests.post(
            f"{server.url}/api/2.0/mlflow/users/create",
            json={"username": account[0], "password": account[1]},
            auth=server.admin,
            timeout=30,
        )
        created.raise_for_status()
        made.append(account)
    return Accounts(server, proxy.result(), *made)


def accounts_database(postgres: Postgres, admin: tuple[str, str]) -> str:
    """A new accounts database at the basic-auth app's schema, with its admin account."""
    import sqlalchemy
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    url = postgres.create_database(f"auth_{secrets.token_hex(3)}", secrets.token_urlsafe(16))
    store = SqlAlchemyStore()
    store.init_db(f"postgresql+psycopg2://{url}")
    store.create_user(admin[0], admin[1], is_admin=True)
    engine: sqlalchemy.Engine = store.engine
    engine.dispose()
    return url


def empty_tracking_store(workdir: Path) -> Path:
    """A migrated, empty SQLite tracking store (start-server.sh copies it for the data proxy),
    made once per test process: migrating one takes ~10 s."""
    path = workdir / "empty-tracking-store.db"
    if not path.exists():
        import sqlalchemy
        from mlflow.store.db.utils import _initialize_tables

        staging = path.with_suffix(".staging")
        staging.unlink(missing_ok=True)
        engine = sqlalchemy.create_engine(f"sqlite:///{staging}")
        _initialize_tables(engine)
        engine.dispose()
        staging.rename(path)
    return path


def start_data_proxy(
    s3: S3Server,
    bucket: str,
    workdir: Path,
    auth_db: str,
    admin: tuple[str, str],
    empty_store: Path | None = None,
) -> AccountsServer:
    """A data proxy over ``bucket``, its accounts in ``auth_db``."""
    # As in docker-compose.yml: the model server's account may add its answered records, and no
    # job runner (MLflow's GenAI jobs: four polling processes otherwise).
    env = {
        "MLFLOW_APP_NAME": "data-proxy",
        "DATA_PROXY_TRAFFIC_WRITER": SERVING_ACCOUNT,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    if empty_store is not None:
        env["MLFLOW_EMPTY_TRACKING_STORE"] = str(empty_store)
    return start_with_accounts(s3, bucket, workdir, ["--artifacts-only"], env, auth_db, admin)


def start_tracking_with_accounts(
    postgres: Postgres,
    s3: S3Server,
    bucket: str,
    workdir: Path,
    stack_account: str,
    model: str,
    auth_db: str,
    admin: tuple[str, str],
) -> AccountsServer:
    """The stack's tracking server: MLflow's accounts and the stack's rule for its model
    (MLFLOW_APP_NAME=stack-registry), runs on a database of its own."""
    backend = postgres.create_mlflow_database(
        f"tracking_{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    )
    env = {
        "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://{backend}",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_APP_NAME": "stack-registry",  # as in docker-compose.yml
        "MLFLOW_PLATFORM_MODEL": model,
        "MLFLOW_STACK_ACCOUNT": stack_account,
        "METRICS_PORT": str(free_port()),  # as in docker-compose.yml, on a port of its own
    }
    server = start_with_accounts(s3, bucket, workdir, [], env, auth_db, admin)
    server.backend = backend
    server.metrics_url = f"http://127.0.0.1:{env['METRICS_PORT']}/metrics"
    return server


def start_with_accounts(
    s3: S3Server,
    bucket: str,
    workdir: Path,
    args: list[str],
    extra_env: dict[str, str],
    auth_db: str,
    admin: tuple[str, str],
) -> AccountsServer:
    """An MLflow server started by the compose services' script, its accounts in ``auth_db``,
    serving ``bucket``."""
    env = {
        **os.environ,
        **s3.env(),
        # The script runs `mlflow` from PATH: this venv's.
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "MLFLOW_AUTH_DATABASE_URI": auth_db,
        "MLFLOW_AUTH_ADMIN_USERNAME": admin[0],
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(16),
        **extra_env,
    }
    command = ["bash", str(REPO_ROOT / "services/mlflow/start-server.sh"), *args]
    command += ["--serve-artifacts", f"--artifacts-destination=s3://{bucket}", "--workers=1"]
    log = workdir / f"{extra_env['MLFLOW_APP_NAME']}-{secrets.token_hex(3)}.log"
    url, process = serve_command_on_free_port(command, env, log, "/health", 120)
    return AccountsServer(url=url, pid=process.pid, bucket=bucket, admin=admin)


# --- Prefect -------------------------------------------------------------------------------------


@dataclass
class PrefectServer:
    """``prefect server start`` on a PostgreSQL database."""

    api_url: str
    pid: int

    def stop(self) -> None:
        stop_group(self.pid)


def compose_prefect_settings() -> dict[str, str]:
    """prefect-server's vacuum and metrics settings in docker-compose.yml, the vacuum's retention
    (P<days>D there) shortened to two hours (Prefect wants over one), checked every 5 s."""
    import yaml

    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    environment = compose["services"]["prefect-server"]["environment"]
    settings = {k: str(v) for k, v in environment.items() if "_DB_VACUUM_" in k or "_METRICS_" in k}
    return settings | {
        "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": "PT2H",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS": "5",
    }


# Prefect's loop services that no integration test relies on (no schedules, late runs, pauses,
# automations or worker health checks there): off, they take a core's share of the run's CPU.
# Events, the task-run recorder (task runs' states) and the vacuum stay on.
UNUSED_PREFECT_SERVICES = {
    f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false"
    for name in (
        "SCHEDULER",
        "LATE_RUNS",
        "FOREMAN",
        "PAUSE_EXPIRATIONS",
        "REPOSSESSOR",
        "CANCELLATION_CLEANUP",
        "CLEANUP_RECONCILER",
        "TRIGGERS",
    )
}


def start_prefect(
    database_url: str, workdir: Path, extra_env: dict[str, str] | None = None
) -> PrefectServer:
    """Start the Prefect API and UI server on a free local port."""
    home = workdir / "prefect-home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED": "true",  # as in docker-compose.yml
        "PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED": "true",
        **(extra_env or {}),
    }
    env.pop("PREFECT_API_URL", None)  # a server, not a client of another one
    url, process = serve_on_free_port(
        "prefect", ["server", "start"], env, workdir / "prefect.log", "/api/health", 180
    )
    api_url = f"{url}/api"
    return PrefectServer(api_url=api_url, pid=process.pid)


# --- the Prefect gateway -------------------------------------------------------------------------


def start_gateway(
    prefect_api_url: str,
    auth_string: str,
    accounts_url: str,
    database: dict[str, str],
    workdir: Path,
    cache_ttl_s: float | None = None,
    work_pool: str = "taxi-pool",
    trusted_proxies: str = "",
) -> tuple[str, subprocess.Popen]:
    """`python -m services.gateway`, as compose runs it, in front of a Prefect server, signing in
    with the accounts of an MLflow server; its tables in ``database`` (the init script's role)."""
    ui = workdir / f"prefect-ui-{secrets.token_hex(3)}"
    env = {
        **os.environ,
        "PREFECT_UPSTREAM_URL": prefect_api_url.removesuffix("/api"),
        "PREFECT_API_AUTH_STRING": auth_string,
        "MLFLOW_TRACKING_URI": accounts_url,
        "GATEWAY_DATABASE_URL": (
            f"postgresql://{database['user']}:{database['password']}@127.0.0.1:"
            f"{database['port']}/gateway"
        ),
        "WORK_POOL": work_pool,
        "TRUSTED_PROXY_ADDRESSES": trusted_proxies,
        # As compose: the UI, answered by the gateway, asks for credentials.
        "PREFECT_SERVER_API_AUTH_STRING": auth_string,
        "PREFECT_UI_STATIC_DIRECTORY": str(ui),
        "PREFECT_HOME": str(workdir / "gateway-prefect-home"),
    }
    env.pop("PREFECT_API_URL", None)
    if cache_ttl_s is not None:
        env["MLFLOW_AUTH_CACHE_TTL_SECONDS"] = str(cache_ttl_s)
    command = [sys.executable, "-m", "services.gateway"]
    return serve_command_on_free_port(command, env, workdir / "gateway.log", "/gateway/health", 120)
