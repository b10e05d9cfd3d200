"""End to end: the compose stack as a user and a teammate meet it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow
import pytest
import requests

from tests.e2e.compose import CONTAINER_SCRIPTS, published_addresses, published_ports
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.e2e


def test_missing_secret_fails_at_config_with_its_name(tmp_path):
    """A required value left out stops compose before anything starts, naming the setting."""
    env_file = tmp_path / "incomplete.env"
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    env_file.write_text("\n".join(line for line in lines if "POSTGRES_PASSWORD" not in line))
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(env_file), "config"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_only_the_authenticated_services_are_published(stack):
    env = stack.env()
    ports = published_ports(stack)
    assert ports.pop("mlflow") == [int(env["MLFLOW_PORT"])]
    assert ports.pop("data-proxy") == [int(env["DATA_PROXY_PORT"])]
    assert ports.pop("prefect-gateway") == [int(env["PREFECT_PORT"])]
    assert ports.pop("serving") == [int(env["SERVING_PORT"])]
    assert ports.pop("prometheus") == [int(env["PROMETHEUS_PORT"])]
    assert all(not published for published in ports.values()), ports
    # Never 0.0.0.0 unless asked, and Prometheus (no sign-in) on this machine only.
    assert published_addresses(stack) == {env["BIND_ADDRESS"], "127.0.0.1"}


def test_host_client_with_only_the_url_round_trips_artifacts(stack, tmp_path, monkeypatch):
    """From the host: log a run and a file above the multipart thresholds, read it back."""
    stack.use_mlflow_as_admin(monkeypatch)
    # Thresholds lowered so a server that offered presigned URLs (pointing at minio:9000, which
    # the host cannot resolve) would make this test fail instead of passing on a small file.
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(1024 * 1024))
    monkeypatch.setenv("MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE", str(1024 * 1024))
    payload = os.urandom(8 * 1024 * 1024)
    (tmp_path / "blob.bin").write_bytes(payload)
    mlflow.set_experiment("e2e-host-client")
    with mlflow.start_run() as run:
        mlflow.log_metric("rmse", 6.0)
        mlflow.log_artifact(str(tmp_path / "blob.bin"))
    back = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="blob.bin", dst_path=str(tmp_path / "back")
    )
    assert Path(back).read_bytes() == payload

    sizes = stack.buckets("list")
    key = next(k for k in sizes if k.endswith(f"{run.info.run_id}/artifacts/blob.bin"))
    assert key.startswith("mlflow-artifacts/") and sizes[key] == len(payload)


def test_uis_are_served_to_the_host(stack):
    """Both UIs answer a browser, and Prefect's tells it the host-side API address."""
    base = stack.prefect_api_url.removesuffix("/api")
    settings = requests.get(f"{base}/ui-settings", timeout=10).json()
    assert settings["available_uis"], settings
    assert settings["auth"] == "BASIC"  # the UI asks for the auth string
    assert settings["api_url"] == stack.prefect_api_url  # PREFECT_UI_API_URL, as shared
    page = requests.get(f"{base}/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
    anonymous = requests.get(stack.mlflow_url, timeout=10)
    assert anonymous.status_code == 401 and "Basic" in anonymous.headers["WWW-Authenticate"]
    env = stack.env()
    admin = (env["MLFLOW_ADMIN_USERNAME"], env["MLFLOW_ADMIN_PASSWORD"])
    mlflow_page = requests.get(stack.mlflow_url, auth=admin, timeout=10)
    assert mlflow_page.status_code == 200 and "<html" in mlflow_page.text.lower()


def test_worker_reaches_services_by_name(stack):
    """From the worker's container definition, by service name, with its own credentials."""
    probe = CONTAINER_SCRIPTS / "worker_probe.py"
    lines = stack.compose(
        "run", "--rm", "--no-deps", "-T", "-v", f"{probe}:/probe.py:ro", "worker",
        "python", "/probe.py",
    ).stdout.split()  # fmt: skip
    assert lines[-3:] == ["http://mlflow:5000", "True", stack.env()["WORK_POOL"]]


def test_deployed_flow_runs_on_the_online_worker(stack):
    """`make deploy`, then the platform-check deployment runs to completion on the worker."""
    stack.make("deploy")
    api = stack.prefect_api_url
    pool = stack.env()["WORK_POOL"]
    workers = requests.post(
        f"{api}/work_pools/{pool}/workers/filter", json={}, auth=stack.prefect_auth, timeout=10
    ).json()
    # ONLINE: the stack's worker (replicas stopped by other tests may still show until their
    # heartbeats time out).
    assert "ONLINE" in [w["status"] for w in workers]

    run = subprocess.run(
        [
            "uv",
            "run",
            "--frozen",
            "prefect",
            "deployment",
            "run",
            "platform-check/platform-check",
            "--watch",
            "--watch-timeout",
            "300",
        ],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "PREFECT_API_URL": api,
            "PREFECT_API_AUTH_STRING": ":".join(stack.prefect_auth),
        },
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    flow_runs = requests.post(
        f"{api}/flow_runs/filter",
        json={"deployments": {"name": {"any_": ["platform-check"]}}},
        auth=stack.prefect_auth,
        timeout=10,
    ).json()
    # Other tests may run this deployment too: every run of it completed, on the pool.
    assert flow_runs and {r["state_type"] for r in flow_runs} == {"COMPLETED"}
    assert {r["work_pool_name"] for r in flow_runs} == {pool}


def test_every_running_service_has_memory_and_process_limits(stack):
    ids = stack.compose("ps", "--quiet").stdout.split()
    inspected = subprocess.run(
        [
            "docker",
            "inspect",
            "--format",
            "{{.Name}} {{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
        ]
        + ids,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    unlimited = [
        line
        for line in inspected
        if int(line.split()[1]) == 0 or line.split()[2] in ("0", "<nil>", "-1")
    ]
    assert ids and not unlimited, unlimited
