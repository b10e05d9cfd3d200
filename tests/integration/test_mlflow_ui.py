"""The MLflow UI of the stack's tracking server (`--app-name stack-registry`), in a real browser:
it opens in its model-training mode without the GenAI assistant's panel, a person's own choice
stays theirs, the page still asks who is calling, and a model's versions say who registered
them ("Created by")."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WORKFLOW = "mlflow.workflowType_v1"


def stored(page, key: str) -> object:
    """A localStorage value of the page, decoded as MLflow stores it (JSON)."""
    raw = page.evaluate("key => window.localStorage.getItem(key)", key)
    return None if raw is None else json.loads(raw)


def registered_by(server, account: tuple[str, str]) -> str:
    """A new model with one version ``account`` registered (on a run of its own); the name."""
    api = f"{server.url}/api/2.0/mlflow"

    def post(endpoint: str, body: dict) -> dict:
        answer = requests.post(f"{api}/{endpoint}", json=body, auth=account, timeout=30)
        assert answer.ok, (endpoint, answer.text)
        return answer.json()

    model = f"ui-created-by-{secrets.token_hex(3)}"
    post("registered-models/create", {"name": model})
    run = post("runs/create", {"experiment_id": "0"})["run"]
    uri = run["info"]["artifact_uri"]
    post("model-versions/create",
         {"name": model, "source": f"{uri}/model", "run_id": run["info"]["run_id"]})  # fmt: skip
    return model


def test_the_ui_opens_for_model_training_and_keeps_a_persons_choice(stack_tracking, tmp_path):
    from mlflow_stack_registry.ui import UI_DEFAULTS
    from playwright.sync_api import sync_playwright

    server, _ = stack_tracking
    assert os.path.exists(CHROMIUM), "install Debian's chromium"
    assert requests.get(f"{server.url}/", timeout=30).status_code == 401
    admin = {"username": server.admin[0], "password": server.admin[1]}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(http_credentials=admin)
            page = context.new_page()
            page.goto(f"{server.url}/#/experiments/0", wait_until="domcontentloaded")
            page.locator("#root *").first.wait_for(timeout=60_000)
            assert {key: stored(page, key) for key in UI_DEFAULTS} == UI_DEFAULTS
            # The experiment page of the model-training mode: its runs, not GenAI's overview.
            page.get_by_text("Runs", exact=True).first.wait_for(timeout=60_000)
            assert page.get_by_text("Detect Issues").count() == 0
            page.screenshot(path=str(tmp_path / "experiment.png"))

            # A person who picks GenAI keeps it: the stack only fills what is not stored.
            page.evaluate("key => window.localStorage.setItem(key, '\"genai\"')", WORKFLOW)
            page.reload(wait_until="domcontentloaded")
            page.locator("#root *").first.wait_for(timeout=60_000)
            assert stored(page, WORKFLOW) == "genai"

            # A model's versions table: "Created by" names the account that registered it.
            model = registered_by(server, server.admin)
            page.goto(f"{server.url}/#/models/{model}", wait_until="domcontentloaded")
            page.get_by_text("Created by", exact=True).first.wait_for(timeout=60_000)
            versions = page.get_by_role("row").filter(has_text="Version 1")
            versions.first.wait_for(timeout=60_000)
            assert admin["username"] in versions.first.inner_text()
            page.screenshot(path=str(tmp_path / "versions.png"))
        finally:
            browser.close()
    assert Path(tmp_path / "experiment.png").stat().st_size > 0
    assert Path(tmp_path / "versions.png").stat().st_size > 0
