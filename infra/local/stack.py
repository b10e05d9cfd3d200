"""The platform as local processes (`make local`): MLflow, Prefect and a worker under honcho.

Settings have the compose stack's names and are read from the environment. Without any, the
servers keep SQLite databases and artifacts in one data directory (LOCAL_DIR); with
MLFLOW_BACKEND_STORE_URI / PREFECT_API_DATABASE_CONNECTION_URL they use those databases, and with
S3_ENDPOINT_URL the artifacts and trip files go to S3 buckets, as in the compose stack.

    python -m infra.local.stack up      start (detached), wait until every service answers
    python -m infra.local.stack down    stop; the data directory stays
    python -m infra.local.stack status  each service's state; exit 0 when the stack runs
    python -m infra.local.stack wait-for URL   block until URL answers (the Procfile's worker)
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from flows.settings import DEFAULT_DATA_BUCKET, Settings
from infra.waiting import answers, wait_for_http, worker_online

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCFILE = Path(__file__).with_name("Procfile")
BIN_DIR = Path(sys.executable).parent
START_TIMEOUT_S = 180


@dataclass(frozen=True)
class LocalStack:
    """Paths and addresses of one local stack, derived from its data directory and ports."""

    data_dir: Path
    mlflow_port: int
    prefect_port: int

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "honcho.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "stack.log"

    @property
    def services_env(self) -> Path:
        """Settings of the three processes (may hold database passwords)."""
        return self.data_dir / "services.env"

    @property
    def client_env(self) -> Path:
        """What `make deploy/train/upload-data` need to talk to this stack."""
        return self.data_dir / "client.env"


def stack_from_env(env: dict[str, str]) -> LocalStack:
    """The stack that LOCAL_DIR, MLFLOW_PORT and PREFECT_PORT describe."""
    return LocalStack(
        data_dir=Path(env.get("LOCAL_DIR") or REPO_ROOT / ".local").resolve(),
        mlflow_port=int(env.get("MLFLOW_PORT") or 5000),
        prefect_port=int(env.get("PREFECT_PORT") or 4200),
    )


def s3_settings(env: dict[str, str]) -> dict[str, str]:
    """S3 credentials under the names boto3 and MLflow read ({} when no S3 is configured)."""
    if not env.get("S3_ENDPOINT_URL"):
        return {}
    return {
        "S3_ENDPOINT_URL": env["S3_ENDPOINT_URL"],
        "MLFLOW_S3_ENDPOINT_URL": env["S3_ENDPOINT_URL"],
        "AWS_ACCESS_KEY_ID": env.get("S3_ACCESS_KEY_ID") or env.get("AWS_ACCESS_KEY_ID", ""),
        "AWS_SECRET_ACCESS_KEY": env.get("S3_SECRET_ACCESS_KEY")
        or env.get("AWS_SECRET_ACCESS_KEY", ""),
        "AWS_DEFAULT_REGION": env.get("S3_REGION") or "us-east-1",
    }


def client_settings(stack: LocalStack, env: dict[str, str]) -> dict[str, str]:
    """Settings shared by the worker and the make targets: addresses, names, the data store."""
    platform = Settings.from_mapping(env)
    settings = {
        "PREFECT_API_URL": stack.prefect_api_url,
        "MLFLOW_TRACKING_URI": stack.mlflow_url,
        "MLFLOW_UI_URL": stack.mlflow_url,
        "WORK_POOL": platform.work_pool,
        "MODEL_NAME": platform.model_name,
        "MLFLOW_EXPERIMENT_NAME": platform.experiment_name,
        "TLC_BASE_URL": platform.tlc_base_url,
        # Where flow runs start (prefect.yaml's pull step): this checkout.
        "APP_DIR": str(REPO_ROOT),
        "PREFECT_HOME": str(stack.data_dir / "prefect"),
    }
    if platform.notify_webhook_url:
        settings["NOTIFY_WEBHOOK_URL"] = platform.notify_webhook_url
    s3 = s3_settings(env)
    if s3:
        settings |= s3 | {"DATA_BUCKET": platform.data_bucket or DEFAULT_DATA_BUCKET}
    else:
        settings["DATA_DIR"] = str(stack.data_dir / "data")
    return settings


def services_settings(stack: LocalStack, env: dict[str, str]) -> dict[str, str]:
    """Everything the three processes need, on top of ``client_settings``."""
    bucket = Settings.from_mapping(env).mlflow_artifact_bucket
    artifacts = f"s3://{bucket}" if s3_settings(env) else str(stack.data_dir / "artifacts")
    return client_settings(stack, env) | {
        "PATH": f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}",
        "MLFLOW_PORT": str(stack.mlflow_port),
        "PREFECT_PORT": str(stack.prefect_port),
        "MLFLOW_BACKEND_STORE_URI": env.get("MLFLOW_BACKEND_STORE_URI")
        or f"sqlite:///{stack.data_dir / 'mlflow.db'}",
        "MLFLOW_ARTIFACTS_DESTINATION": artifacts,
        # As in docker-compose.yml: the GenAI job runner is not used and costs CPU when idle.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": env.get("PREFECT_API_DATABASE_CONNECTION_URL")
        or f"sqlite+aiosqlite:///{stack.data_dir / 'prefect' / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # As in docker-compose.yml: flow-run logs over the websocket, for `make train`.
        "PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED": "true",
        "PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED": "true",
        "PREFECT_UI_API_URL": stack.prefect_api_url,
        # Flow runs send heartbeats, so the zombie automation can mark a lost run Crashed.
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
    }


def write_env_file(path: Path, settings: dict[str, str]) -> None:
    """KEY='value' lines that both honcho and a POSIX shell read; private to the user."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{key}={shlex.quote(value)}\n" for key, value in sorted(settings.items()))
    path.touch(mode=0o600)
    path.write_text(text)


def alive(pid: int) -> bool:
    """True when ``pid`` runs (an exited process not yet reaped by its parent does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        try:
            os.kill(pid, 0)  # no /proc (macOS): ask the kernel
            return True
        except ProcessLookupError:
            return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def running_pid(stack: LocalStack) -> int | None:
    """The pid of the stack's honcho when it is alive."""
    try:
        pid = int(stack.pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def wait_until_ready(stack: LocalStack, pool: str, pid: int) -> None:
    """Block until MLflow, Prefect and the worker answer; fail if honcho stops first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = {"mlflow", "prefect", "worker"}
    while pending:
        if running_pid(stack) != pid:
            raise RuntimeError(f"the local stack stopped while starting; see {stack.log_file}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {START_TIMEOUT_S}s: {sorted(pending)}")
        if "mlflow" in pending and answers(f"{stack.mlflow_url}/health"):
            pending.discard("mlflow")
            print(f"  mlflow   ready at {stack.mlflow_url}", flush=True)
        if "prefect" in pending and answers(f"{stack.prefect_api_url}/health"):
            pending.discard("prefect")
            print(f"  prefect  ready at {stack.prefect_api_url}", flush=True)
        if (
            "worker" in pending
            and "prefect" not in pending
            and worker_online(stack.prefect_api_url, pool)
        ):
            pending.discard("worker")
            print(f"  worker   online in pool {pool}", flush=True)
        time.sleep(0.5)


def create_buckets(settings: dict[str, str]) -> None:
    """With S3 configured, create the artifact and data buckets as the compose init job does."""
    if "S3_ENDPOINT_URL" not in settings:
        return
    buckets = [
        settings["MLFLOW_ARTIFACTS_DESTINATION"].removeprefix("s3://"),
        settings["DATA_BUCKET"],
    ]
    subprocess.run(
        [sys.executable, "-m", "infra.minio.create_buckets", *buckets],
        env={**os.environ, **settings},
        cwd=REPO_ROOT,
        check=True,
    )


def port_in_use(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start_honcho(stack: LocalStack) -> subprocess.Popen[bytes]:
    """honcho running the Procfile in its own session, so it outlives `make local`."""
    log = stack.log_file.open("ab")
    return subprocess.Popen(
        [
            str(BIN_DIR / "honcho"),
            "start",
            "--no-colour",
            "--procfile",
            str(PROCFILE),
            "--env",
            str(stack.services_env),
            "--app-root",
            str(REPO_ROOT),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # `make local-down` stops it
        cwd=REPO_ROOT,
    )


def up(stack: LocalStack, env: dict[str, str]) -> int:
    """Start honcho in the background with the Procfile and wait until the stack answers."""
    if pid := running_pid(stack):
        print(f"already running (honcho pid {pid}, data in {stack.data_dir})")
        return 0
    for port in (stack.mlflow_port, stack.prefect_port):
        if port_in_use(port):
            print(
                f"port {port} is taken; choose another (MLFLOW_PORT / PREFECT_PORT)",
                file=sys.stderr,
            )
            return 1
    settings, client = services_settings(stack, env), client_settings(stack, env)
    for folder in ("logs", "prefect", "data", "artifacts"):
        (stack.data_dir / folder).mkdir(parents=True, exist_ok=True)
    write_env_file(stack.services_env, settings)
    write_env_file(stack.client_env, client)
    create_buckets(settings)
    process = start_honcho(stack)
    stack.pid_file.write_text(str(process.pid))
    print(f"starting the local stack (data in {stack.data_dir}, log {stack.log_file})", flush=True)
    try:
        wait_until_ready(stack, settings["WORK_POOL"], process.pid)
    except (RuntimeError, TimeoutError) as error:
        down(stack)
        print(f"make local: {error}", file=sys.stderr)
        return 1
    subprocess.run(
        [sys.executable, "-m", "infra.prefect.automations"],
        env={**os.environ, **client},
        cwd=REPO_ROOT,
        check=True,
    )
    print(f"\nMLflow   {stack.mlflow_url}\nPrefect  http://127.0.0.1:{stack.prefect_port}")
    return 0


def down(stack: LocalStack, timeout_s: float = 30) -> int:
    """Stop honcho, which stops its processes (SIGTERM, SIGKILL after 5 s); keep the data."""
    pid = running_pid(stack)
    if pid is None:
        print(f"no local stack is running for {stack.data_dir}")
        stack.pid_file.unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while running_pid(stack) == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    if running_pid(stack) == pid:
        os.killpg(pid, signal.SIGKILL)
    stack.pid_file.unlink(missing_ok=True)
    print(f"stopped; data kept in {stack.data_dir}")
    return 0


def wait_for(url: str, timeout_s: float = START_TIMEOUT_S) -> int:
    """Block until ``url`` answers 200 (the worker waits for its server this way)."""
    try:
        wait_for_http(url, timeout_s)
    except TimeoutError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


def status(stack: LocalStack, pool: str) -> int:
    """Print each process's state (`make ps`); 0 while the stack runs."""
    pid = running_pid(stack)
    if pid is None:
        print(f"no local stack runs for {stack.data_dir}")
        return 1
    mlflow_ok = answers(f"{stack.mlflow_url}/health")
    prefect_ok = answers(f"{stack.prefect_api_url}/health")
    print(f"local stack in {stack.data_dir} (honcho pid {pid}, log {stack.log_file})")
    print(f"  mlflow   {stack.mlflow_url:<28} {'healthy' if mlflow_ok else 'not answering'}")
    print(f"  prefect  {stack.prefect_api_url:<28} {'healthy' if prefect_ok else 'not answering'}")
    online = prefect_ok and worker_online(stack.prefect_api_url, pool)
    print(f"  worker   pool {pool:<23} {'online' if online else 'not online'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command for the stack that LOCAL_DIR and the ports name."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "wait-for"])
    parser.add_argument("url", nargs="?", help="for wait-for: the URL to wait for")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    stack = stack_from_env(env)
    if args.command == "up":
        return up(stack, env)
    if args.command == "down":
        return down(stack)
    if args.command == "wait-for":
        return wait_for(args.url)
    return status(stack, Settings.from_mapping(env).work_pool)


if __name__ == "__main__":
    sys.exit(main())
