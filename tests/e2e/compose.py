"""Driving the real compose stack from the tests: make targets, compose commands, flow runs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from flows.settings import DEFAULT_DATA_BUCKET, Settings
from infra import make_env
from infra.make_env import read_env
from tests.e2e.bridge import bridge_address
from tests.e2e.second_host import TLS_NAME
from tests.paths import REPO_ROOT
from tests.servers import free_port

PROJECT = "taxi-mlops-e2e"
NETWORK = f"{PROJECT}_default"
# The webhook receiver: a container on the stack's network, started by a fixture.
RECEIVER = f"{PROJECT}-receiver"
MODEL = Settings.from_mapping({}).model_name  # the stack runs on .env.example's defaults
# Scripts the tests run inside containers, mounted read-only.
CONTAINER_SCRIPTS = Path(__file__).resolve().parent / "containers"
DATA_BUCKET = DEFAULT_DATA_BUCKET


@dataclass
class Stack:
    """A compose project and the addresses the host sees."""

    env_file: Path
    mlflow_url: str
    prefect_api_url: str
    serving_url: str
    data_proxy_url: str
    prometheus_url: str = ""

    def compose(self, *args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run ``docker compose`` against this stack; with ``check``, fail showing its errors."""
        result = subprocess.run(
            ["docker", "compose", "--env-file", str(self.env_file), *args],
            cwd=REPO_ROOT,
            text=True,
            capture_output=True,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)[:300]} failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def make(self, target: str, *variables: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a Makefile target against this stack, as a user would."""
        result = subprocess.run(
            ["make", target, f"ENV_FILE={self.env_file}", "STACK=compose", *variables],
            cwd=REPO_ROOT,
            text=True,
            capture_output=True,
        )
        output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        if check:
            assert result.returncode == 0, f"make {target} failed:\n{output}"
        return result

    def exec_python(self, service: str, code: str) -> str:
        """Run Python code inside a service's container; return its output."""
        return self.compose("exec", "-T", service, "python", "-c", code).stdout

    def buckets(self, command: str, *args: str, volume: str | None = None) -> Any:
        """`python -m infra.backup.buckets COMMAND` in a one-off container; its JSON answer."""
        mount = ["-v", volume] if volume else []
        result = self.compose(
            "run", "--rm", "--no-deps", "-T", *mount, "create-buckets",
            "python", "-m", "infra.backup.buckets", command, *args,
        )  # fmt: skip
        return json.loads(result.stdout.strip().splitlines()[-1])

    @property
    def prefect_auth(self) -> tuple[str, str]:
        """(user, password) of the admin at the Prefect gateway: the MLflow admin's account."""
        env = self.env()
        return env["MLFLOW_ADMIN_USERNAME"], env["MLFLOW_ADMIN_PASSWORD"]

    def use_mlflow_as(self, monkeypatch: Any, username: str, password: str) -> None:
        """Point this process's MLflow client at the stack as ``username``, with no S3 settings."""
        import mlflow

        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", self.mlflow_url)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        mlflow.set_tracking_uri(self.mlflow_url)

    def use_mlflow_as_admin(self, monkeypatch: Any) -> None:
        """The MLflow client as the stack's admin."""
        env = self.env()
        self.use_mlflow_as(monkeypatch, env["MLFLOW_ADMIN_USERNAME"], env["MLFLOW_ADMIN_PASSWORD"])

    def read_predictions(self, uri: str, rows: int) -> Any:
        """The first ``rows`` rows of a predictions object in the data bucket (read by the
        worker, which holds the bucket's key; the host does not)."""
        import pandas as pd

        bucket, key = uri.removeprefix("s3://").split("/", 1)
        code = (
            "import io, pandas as pd; from flows.resources.s3 import s3_client; "
            "from flows.settings import Settings; "
            "s3 = s3_client(Settings.from_env().s3_endpoint_url); "
            f"body = s3.get_object(Bucket={bucket!r}, Key={key!r})['Body'].read(); "
            "frame = pd.read_parquet(io.BytesIO(body)); "
            f"print(len(frame)); print(frame.head({rows}).to_json(orient='split', "
            "date_format='iso', date_unit='us'))"
        )
        count, frame = self.exec_python("worker", code).strip().splitlines()[-2:]
        return int(count), pd.read_json(io.StringIO(frame), orient="split")

    def env(self) -> dict[str, str]:
        """The generated settings."""
        return read_env(self.env_file)


def posts_received(container: str) -> list[dict[str, Any]]:
    """The JSON bodies the webhook receiver container has been sent so far."""
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True).stdout
    return [json.loads(line) for line in logs.splitlines() if line.startswith("{")]


def write_env_file(path: Path, text: str) -> None:
    """A settings file, owner-only from the moment it exists (it holds the stack's secrets)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)


def shared_stack_settings(workdir: Path) -> Stack:
    """Fresh settings and ports for a stack shared as the README's "Share with your team" says,
    on the address containers reach the host at (the bridge network's): teammates in other
    containers use the same URLs as the host, and nothing is published beyond this machine."""
    mlflow_port, prefect_port, serving_port = free_port(), free_port(), free_port()
    data_proxy_port, prometheus_port = free_port(), free_port()
    host = bridge_address(os.environ.get("PYTHON_IMAGE") or "python:3.11-slim-bookworm")
    overrides = {
        "COMPOSE_PROJECT_NAME": PROJECT,
        "MLFLOW_PORT": str(mlflow_port),
        "PREFECT_PORT": str(prefect_port),
        "SERVING_PORT": str(serving_port),
        "DATA_PROXY_PORT": str(data_proxy_port),
        "PROMETHEUS_PORT": str(prometheus_port),
        # Prometheus and the platform's exporter too (tests/e2e/test_metrics.py).
        "COMPOSE_PROFILES": "minio,metrics",
        # The model server's answers reach the bucket within seconds (test_served_traffic.py).
        "SERVING_TRAFFIC_FLUSH_SECONDS": "5",
        "BIND_ADDRESS": host,
        # ... and the name the TLS front door serves them under (tests/e2e/test_second_host.py).
        "MLFLOW_EXTRA_ALLOWED_HOSTS": f"{host},{host}:{mlflow_port},{host}:{data_proxy_port},"
        f"{TLS_NAME},{TLS_NAME}:5443",
        "MLFLOW_UI_URL": f"http://{host}:{mlflow_port}",
        "PREFECT_UI_API_URL": f"http://{host}:{prefect_port}/api",
        "APP_IMAGE": "taxi-mlops/app:e2e",
        "NOTIFY_WEBHOOK_URL": f"http://{RECEIVER}:8000/hook",
    }
    for name in ("PYTHON_IMAGE", "POSTGRES_IMAGE", "MINIO_IMAGE", "PROMETHEUS_IMAGE"):  # stand-ins
        if os.environ.get(name):
            overrides[name] = os.environ[name]
    env_file = workdir / "e2e.env"
    write_env_file(env_file, make_env.render((REPO_ROOT / ".env.example").read_text(), overrides))
    return Stack(
        env_file=env_file,
        mlflow_url=f"http://{host}:{mlflow_port}",
        prefect_api_url=f"http://{host}:{prefect_port}/api",
        serving_url=f"http://{host}:{serving_port}",
        data_proxy_url=f"http://{host}:{data_proxy_port}",
        prometheus_url=f"http://127.0.0.1:{prometheus_port}",
    )


def publishers(stack: Stack) -> list[tuple[str, str, int]]:
    """(service, host address, host port) of every port the stack publishes."""
    rows = stack.compose("ps", "--all", "--format", "json").stdout
    services = [json.loads(line) for line in rows.splitlines() if line.strip()]
    return [
        (s["Service"], p["URL"], p["PublishedPort"])
        for s in services
        for p in s.get("Publishers") or []
        if p.get("PublishedPort")
    ]


def published_ports(stack: Stack) -> dict[str, list[int]]:
    """Host ports each service publishes (services without any map to [])."""
    rows = stack.compose("ps", "--all", "--format", "{{.Service}}").stdout.split()
    ports: dict[str, list[int]] = {service: [] for service in rows}
    for service, _, port in publishers(stack):
        ports[service] = sorted({*ports[service], port})
    return ports


def published_addresses(stack: Stack) -> set[str]:
    """Host addresses any service publishes on."""
    return {address for _, address, _ in publishers(stack)}


# --- flow runs (the Prefect client must point at the stack: the `prefect` fixture) -------------


def start_deployment(name: str, **parameters: Any) -> UUID:
    """Start a deployment's flow run without waiting; return its id."""
    from prefect.deployments import run_deployment

    return run_deployment(name, parameters=parameters, timeout=0).id


def flow_run_state(flow_run_id: UUID) -> Any:
    """The flow run's current state."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def poll_state(flow_run_id: UUID, reached: Any, timeout_s: float) -> Any:
    """Poll until the flow run's state satisfies ``reached`` or is final; return that state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = flow_run_state(flow_run_id)
        if reached(state) or state.is_final():
            return state
        time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} still {state.name} after {timeout_s}s")


def wait_for_state(flow_run_id: UUID, names: set[str], timeout_s: float) -> Any:
    """Poll until the flow run is in one of ``names``; return that state."""
    state = poll_state(flow_run_id, lambda s: s.name in names, timeout_s)
    if state.name not in names:
        raise AssertionError(f"flow run {flow_run_id} ended {state.name}: {state.message}")
    return state


def wait_until_final(flow_run_id: UUID, timeout_s: float) -> Any:
    """Poll until the flow run has ended; return its final state."""
    return poll_state(flow_run_id, lambda s: False, timeout_s)
