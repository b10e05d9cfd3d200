"""The MLflow UI of the stack's tracking server (`--app-name stack-registry`), in a real browser:
it opens in its model-training mode without the GenAI assistant's panel, a person's own choice
stays theirs, and the page still asks who is calling."""

from __future__ import annotations

import json
import os
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
        finally:
            browser.close()
    assert Path(tmp_path / "experiment.png").stat().st_size > 0
