"""A worker on another host joins the pool with `make worker-env` (on the stack's machine) and
`make worker` (on its own): outside the stack's network, holding only URLs and its own account,
it trains to a registered version, reading the trip files through the data proxy."""

from __future__ import annotations

import subprocess
import time

import pytest

from infra.make_env import read_env
from tests.e2e.compose import start_deployment, wait_until_final
from tests.e2e.test_scale import docker_logs, online_workers, submitted_by

pytestmark = pytest.mark.e2e

NAME = "remote-e2e"
PROJECT = "taxi-mlops-e2e-remote"
# What the stack's .env holds that a worker elsewhere must never receive.
STACK_SECRETS = (
    "POSTGRES_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "PREFECT_DB_PASSWORD",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_SECRET_KEY",
    "MLFLOW_WORKER_PASSWORD",
    "MLFLOW_SERVING_PASSWORD",
    "PREFECT_API_AUTH_STRING",
    "GATEWAY_DB_PASSWORD",
)


def remote_container() -> str:
    """The name of the outside worker's container."""
    names = subprocess.run(
        [
            "docker",
            "ps",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
            "--format",
            "{{.Names}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(names) == 1, names
    return names[0]


def test_a_worker_on_another_host_trains_to_a_registered_version(
    stack, prefect, trained, admin, tmp_path
):
    env = stack.env()
    settings_file = tmp_path / f"worker-{NAME}.env"
    made = stack.make("worker-env", f"NAME={NAME}", f"WORKER_ENV={settings_file}")
    assert f"wrote {settings_file}" in made.stdout, made.stdout + made.stderr
    given = read_env(settings_file)
    assert given["DATA_PROXY_URL"] == stack.data_proxy_url
    assert given["MLFLOW_TRACKING_URI"] == stack.mlflow_url
    assert given["PREFECT_API_URL"] == stack.prefect_api_url
    assert given["MLFLOW_TRACKING_USERNAME"] == NAME
    # Its own account at the Prefect gateway as well.
    assert given["PREFECT_API_AUTH_STRING"] == f"{NAME}:{given['MLFLOW_TRACKING_PASSWORD']}"
    text = settings_file.read_text()
    leaked = [name for name in STACK_SECRETS if env[name] in text]
    assert not leaked, f"the worker's settings hold the stack's {leaked}"
    assert settings_file.stat().st_mode & 0o077 == 0  # owner-only: it holds a password

    model = env.get("MODEL_NAME") or "taxi-trip-duration"
    versions_before = {v.version for v in admin.search_model_versions(f"name='{model}'")}
    pool = env["WORK_POOL"]
    stack.compose("stop", "worker")  # the run can only land on the outside worker
    worker_vars = [
        f"WORKER_ENV={settings_file}",
        f"APP_IMAGE={env['APP_IMAGE']}",
        f"WORKER_PROJECT={PROJECT}",
    ]
    try:
        started = time.monotonic()
        stack.make("worker", *worker_vars)
        deadline = time.monotonic() + 120
        while NAME not in online_workers(pool):
            assert time.monotonic() < deadline, f"{NAME} never came online"
            time.sleep(2)
        online_s = time.monotonic() - started
        container = remote_container()
        inspected = subprocess.run(
            ["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", container],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert env["COMPOSE_PROJECT_NAME"] not in inspected  # not on the stack's network
        worker_env = subprocess.run(
            ["docker", "exec", container, "env"], capture_output=True, text=True, check=True
        ).stdout
        assert "AWS_SECRET_ACCESS_KEY" not in worker_env and "DATA_BUCKET" not in worker_env

        flow_run_id = start_deployment(
            "train/train", color="green", train_month="2021-01", val_month="2021-02", promote=True
        )
        submitted = time.monotonic()
        state = wait_until_final(flow_run_id, timeout_s=600)
        print(
            f"\nmake worker -> ONLINE {online_s:.1f} s; train on it (promote) "
            f"{time.monotonic() - submitted:.1f} s"
        )
        log = docker_logs(container)
        assert state.name == "Completed", log[-3000:]
        assert submitted_by(log, str(flow_run_id))
    finally:
        stack.make("worker-down", *worker_vars, check=False)
        stack.make("up")  # the stack's own worker back
        stack.make("user-delete", f"NAME={NAME}", check=False)

    new = [
        v
        for v in admin.search_model_versions(f"name='{model}'")
        if v.version not in versions_before
    ]
    assert len(new) == 1, new
    params = admin.get_run(new[0].run_id).data.params
    # The trip files came through the data proxy, with the worker's account.
    assert params["train_uri"].startswith(stack.data_proxy_url), params["train_uri"]
    assert params["val_uri"].startswith(stack.data_proxy_url), params["val_uri"]
