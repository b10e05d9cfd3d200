"""Prefect for a team, on the compose stack: teammates and workers on other hosts sign in to the
Prefect gateway with their own MLflow accounts, in the UI (a real headless Chromium) and the CLI,
and each thing their role may not do is refused. The platform's names belong to the stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.e2e.test_auth import create_user
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def call(stack, account, method: str, path: str, **kwargs) -> requests.Response:
    """One Prefect API call through the gateway (the published Prefect port)."""
    url = f"{stack.prefect_api_url}{path}"
    return requests.request(method, url, auth=account, timeout=30, **kwargs)


def deployment_id(stack, name: str) -> str:
    """A deployment's id, read as the admin."""
    answer = call(stack, stack.prefect_auth, "GET", f"/deployments/name/{name}")
    answer.raise_for_status()
    return answer.json()["id"]


@pytest.fixture(scope="module")
def erin(stack) -> tuple[str, str]:
    """A teammate, made with `make user`."""
    return "erin", create_user(stack, "erin")


def test_a_teammate_runs_a_deployment_from_outside_and_is_its_recorded_starter(
    stack, trained, erin, monkeypatch
):
    run = subprocess.run(
        ["uv", "run", "--frozen", "prefect", "deployment", "run"]
        + ["platform-check/platform-check", "--watch", "--watch-timeout", "300"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "PREFECT_API_URL": stack.prefect_api_url,
            "PREFECT_API_AUTH_STRING": ":".join(erin),
        },
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    runs = call(
        stack,
        erin,
        "POST",
        "/flow_runs/filter",
        json={"flow_runs": {"tags": {"all_": ["started-by:erin"]}}},
    ).json()
    assert runs and runs[0]["state_type"] == "COMPLETED"
    # The MLflow run the flow run made names her too.
    stack.use_mlflow_as_admin(monkeypatch)
    found = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("platform-check").experiment_id],
        filter_string=f"tags.`prefect.flow_run_id` = '{runs[0]['id']}'",
    )
    assert found and found[0].data.tags["platform.started_by"] == "erin"


def test_a_teammate_signs_in_to_the_prefect_ui_and_sees_the_flow_runs(stack, erin, tmp_path):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "install Debian's chromium (.ci/run does)"
    flow_runs = call(stack, erin, "POST", "/flow_runs/filter", json={"limit": 1}).json()
    assert flow_runs, "no flow run to see"
    name = flow_runs[0]["name"]
    ui = stack.prefect_api_url.removesuffix("/api")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            # The UI's own prompt: a challenge for the browser's native one would hold every call.
            page.goto(f"{ui}/runs", wait_until="domcontentloaded")
            password = page.locator("input[type='password']")
            password.wait_for(timeout=30_000)  # the UI's own sign-in prompt
            password.fill(":".join(erin))
            password.press("Enter")
            page.get_by_text(name).first.wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(tmp_path / "prefect-ui.png"))
            browser.close()


def refused_operations(stack) -> list[tuple[str, str, dict | None]]:
    """Calls only admins may make: job variables, deployments, pools, automations, blocks."""
    check = deployment_id(stack, "platform-check/platform-check")
    pool = stack.env()["WORK_POOL"]
    return [
        (
            "POST",
            f"/deployments/{check}/create_flow_run",
            {"job_variables": {"command": "sh -c 'id; env'"}},
        ),
        ("PATCH", f"/deployments/{check}", {"job_variables": {"command": "sh -c id"}}),
        ("POST", "/deployments/", {"name": "mine", "flow_id": str(uuid.uuid4())}),
        ("PATCH", f"/work_pools/{pool}", {"base_job_template": {}}),
        ("POST", "/automations/", {"name": "mine"}),
        ("POST", "/block_documents/", {"name": "mine"}),
        ("POST", "/variables/", {"name": "mine", "value": 1}),
        ("POST", "/v2/concurrency_limits/", {"name": "mine", "limit": 1}),
    ]


def test_teammates_and_worker_accounts_may_not_change_the_platform(stack, erin, tmp_path):
    settings_file = tmp_path / "worker-probe.env"
    stack.make("worker-env", "NAME=probe-w", f"WORKER_ENV={settings_file}")
    worker_auth = ("probe-w", read_password(settings_file))
    try:
        for account in (erin, worker_auth):
            for method, path, body in refused_operations(stack):
                answer = call(stack, account, method, path, json=body)
                assert answer.status_code == 403, (account[0], method, path, answer.text)
        assert call(stack, None, "POST", "/flows/filter", json={}).status_code == 401
        audit = stack.make("audit", "NAME=erin", "LIMIT=200").stdout
        assert "create_flow_run  403  refused: a run of a deployment uses its deployment" in audit
    finally:
        stack.make("user-delete", "NAME=probe-w")
    # Deleting the worker ends its access to Prefect too, within the password cache's TTL.
    ttl = int(stack.env()["MLFLOW_AUTH_CACHE_TTL_SECONDS"])
    started = time.monotonic()
    while call(stack, worker_auth, "POST", "/flows/filter", json={}).status_code != 401:
        assert time.monotonic() - started < ttl + 10, "a deleted worker still reaches Prefect"
        time.sleep(1)


def read_password(settings_file) -> str:
    """The worker account's password from its settings file."""
    for line in settings_file.read_text().splitlines():
        if line.startswith("MLFLOW_TRACKING_PASSWORD="):
            return line.split("=", 1)[1]
    raise AssertionError(f"no password in {settings_file}")


def test_the_platforms_names_belong_to_the_stack(stack, monkeypatch):
    env = stack.env()
    model = env.get("MODEL_NAME") or "taxi-trip-duration"
    experiment = env.get("MLFLOW_EXPERIMENT_NAME") or "taxi-trip-duration"
    stack.use_mlflow_as(monkeypatch, "frank", create_user(stack, "frank"))
    client = MlflowClient()
    for name in (experiment, f"{experiment}-scoring", f"{experiment}-monitoring"):
        assert client.get_experiment_by_name(name) is not None, name  # made on `make up`
        with pytest.raises(MlflowException, match="RESOURCE_ALREADY_EXISTS|already exists"):
            client.create_experiment(name)
    with pytest.raises(MlflowException, match="RESOURCE_ALREADY_EXISTS|already exists"):
        client.create_registered_model(model)
    # make grant gives READ unless told otherwise: no alias moves, no writes to the experiment.
    stack.make("grant", "NAME=frank", f"MODEL={model}")
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
        client.set_registered_model_alias(model, "champion", "1")
    training = client.get_experiment_by_name(experiment).experiment_id
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
        client.create_run(training)
