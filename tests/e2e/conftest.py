"""The real compose stack, brought up once for the end-to-end tests and removed afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.e2e.bridge import bridge_address
from tests.servers import free_port

sys.path.insert(0, str(REPO_ROOT / "infra"))
import make_env  # noqa: E402

PROJECT = "taxi-mlops-e2e"
# The fault tests' webhook receiver: a container on the stack's network, started by a fixture.
RECEIVER = f"{PROJECT}-receiver"


@dataclass
class Stack:
    """A running compose project and the addresses the host sees."""

    env_file: Path
    mlflow_url: str
    prefect_api_url: str

    def compose(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
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

    def make(self, target: str, *variables: str) -> subprocess.CompletedProcess:
        """Run a Makefile target against this stack, as a user would."""
        result = subprocess.run(
            ["make", target, f"ENV_FILE={self.env_file}", *variables],
            cwd=REPO_ROOT,
            text=True,
            capture_output=True,
        )
        output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        assert result.returncode == 0, f"make {target} failed:\n{output}"
        return result

    def exec_python(self, service: str, code: str) -> str:
        """Run Python code inside a service's container; return its output."""
        return self.compose("exec", "-T", service, "python", "-c", code).stdout

    @property
    def prefect_auth(self) -> tuple[str, str]:
        """(user, password) of the Prefect API's basic auth."""
        user, password = self.env()["PREFECT_API_AUTH_STRING"].split(":", 1)
        return user, password

    def use_mlflow_as(self, monkeypatch, username: str, password: str) -> None:
        """Point this process's MLflow client at the stack as ``username``, with no S3 settings."""
        import mlflow

        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", self.mlflow_url)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        mlflow.set_tracking_uri(self.mlflow_url)

    def use_mlflow_as_admin(self, monkeypatch) -> None:
        """The MLflow client as the stack's admin."""
        env = self.env()
        self.use_mlflow_as(monkeypatch, env["MLFLOW_ADMIN_USERNAME"], env["MLFLOW_ADMIN_PASSWORD"])

    def env(self) -> dict[str, str]:
        """The generated settings."""
        return dict(
            line.split("=", 1)
            for line in self.env_file.read_text().splitlines()
            if line and not line.startswith("#") and "=" in line
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """`make up` on fresh settings and ports; `docker compose down -v` at the end."""
    workdir = tmp_path_factory.mktemp("e2e")
    mlflow_port, prefect_port = free_port(), free_port()
    env_file = workdir / "e2e.env"
    # Shared as the README's "Share with your team" says, on the address containers reach the
    # host at (Docker's bridge gateway): teammates in other containers use the same URLs as the
    # host, and nothing is published beyond this machine.
    host = bridge_address(os.environ.get("PYTHON_IMAGE") or "python:3.11-slim-bookworm")
    overrides = {
        "COMPOSE_PROJECT_NAME": PROJECT,
        "MLFLOW_PORT": str(mlflow_port),
        "PREFECT_PORT": str(prefect_port),
        "BIND_ADDRESS": host,
        "MLFLOW_EXTRA_ALLOWED_HOSTS": f"{host},{host}:{mlflow_port}",
        "MLFLOW_UI_URL": f"http://{host}:{mlflow_port}",
        "PREFECT_UI_API_URL": f"http://{host}:{prefect_port}/api",
        "APP_IMAGE": "taxi-mlops/app:e2e",
        "NOTIFY_WEBHOOK_URL": f"http://{RECEIVER}:8000/hook",
    }
    for name in ("PYTHON_IMAGE", "POSTGRES_IMAGE", "MINIO_IMAGE"):  # CI's stand-in images
        if os.environ.get(name):
            overrides[name] = os.environ[name]
    env_file.write_text(make_env.render((REPO_ROOT / ".env.example").read_text(), overrides))
    stack = Stack(
        env_file=env_file,
        mlflow_url=f"http://{host}:{mlflow_port}",
        prefect_api_url=f"http://{host}:{prefect_port}/api",
    )
    try:
        up = subprocess.run(
            ["make", "up", f"ENV_FILE={env_file}"], cwd=REPO_ROOT, text=True, capture_output=True
        )
        (workdir / "make-up.log").write_text(up.stdout + up.stderr)
        assert up.returncode == 0, f"make up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        yield stack
    finally:
        logs = stack.compose("logs", "--no-color", check=False)
        (workdir / "compose.log").write_text(logs.stdout + logs.stderr)
        print(f"\ncompose logs: {workdir / 'compose.log'}")
        stack.compose("down", "--volumes", "--remove-orphans", check=False)


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
