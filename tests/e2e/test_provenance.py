"""Only what the stack trained and approved runs as a model, on the compose stack: a teammate with
EDIT cannot write into a registered version's files (and training goes on as before), a version
whose files changed anyway is refused by the model server and by scoring, the champion keeps
answering, and only the stack and admins move the champion."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.e2e.compose import MODEL, start_deployment, wait_for_state, wait_until_final
from tests.e2e.test_auth import create_user

pytestmark = pytest.mark.e2e

WEAK = {"n_estimators": 3, "max_depth": 2}
ONE_TRIP = {
    "lpep_pickup_datetime": "2021-02-01 08:00:00",
    "PULocationID": 74,
    "DOLocationID": 75,
    "trip_distance": 1.2,
}


def health(stack) -> dict:
    """The model server's /health (open: it names versions only)."""
    return requests.get(f"{stack.serving_url}/health", timeout=10).json()


def wait_for_health(stack, done, timeout_s: float = 60) -> dict:
    """/health again until ``done`` holds (the last answer either way)."""
    deadline, answer = time.monotonic() + timeout_s, health(stack)
    while not done(answer) and time.monotonic() < deadline:
        time.sleep(1)
        answer = health(stack)
    return answer


def test_a_teammate_cannot_change_a_version_and_a_changed_one_is_refused_everywhere(
    stack, trained, prefect, admin, monkeypatch
):
    challenger_run = start_deployment(
        "train/train", color="green", train_month="2021-01", val_month="2021-02", params=WEAK
    )
    wait_for_state(challenger_run, {"Completed"}, 300)
    version = admin.get_model_version_by_alias(MODEL, "challenger")
    record = json.loads(version.tags["platform.record"])
    assert record["approved_by"] == "training" and "code/flows/features.py" in record["files"]
    champion = admin.get_model_version_by_alias(MODEL, "champion").version

    # A teammate with EDIT on the training experiment and the model (make grant ... EDIT).
    mallory = create_user(stack, "mallory")
    experiment = admin.get_experiment(admin.get_run(version.run_id).info.experiment_id)
    stack.make("grant", "NAME=mallory", f"EXPERIMENT={experiment.name}", "PERMISSION=EDIT")
    stack.make("grant", "NAME=mallory", f"MODEL={MODEL}", "PERMISSION=EDIT")
    stack.use_mlflow_as(monkeypatch, "mallory", mallory)
    with pytest.raises(MlflowException, match="only the stack's promotion and admins"):
        MlflowClient().set_registered_model_alias(MODEL, "champion", version.version)
    with pytest.raises(MlflowException, match="only the stack's promotion and admins"):
        MlflowClient().set_model_version_tag(MODEL, version.version, "platform.record", "{}")
    # MLflow lets EDIT rewrite a version's files through the artifact proxy; the stack's app
    # does not: the files of a registered version are written once.
    for target in (version.version, champion):
        location = admin.get_model_version_download_uri(MODEL, target)
        path = location.removeprefix("mlflow-artifacts:").strip("/")
        put = requests.put(
            f"{stack.mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{path}/SECURITY_PROBE.txt",
            data=b"probe",
            auth=("mallory", mallory),
            timeout=30,
        )
        assert put.status_code == 403 and "written once" in put.text, (target, put.text)
    # So the team is not stopped: the next training is compared with the champion as always.
    trained_again = stack.make("train", "TRAIN_MONTH=2021-01", "VAL_MONTH=2021-02").stdout
    assert re.search(r"champion:\s+(yes|no) \(rmse [0-9.]+ (<|is not)", trained_again), (
        trained_again[-2000:]
    )
    champion = admin.get_model_version_by_alias(MODEL, "champion").version

    # Files changed anyway (here by an admin, whom the rule lets write; or outside MLflow)...
    settings = stack.env()
    location = admin.get_model_version_download_uri(MODEL, version.version)
    path = location.removeprefix("mlflow-artifacts:").strip("/")
    put = requests.put(
        f"{stack.mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{path}/code/flows/features.py",
        data=b"import os\nos.system('id > /tmp/owned')\n",
        auth=(settings["MLFLOW_ADMIN_USERNAME"], settings["MLFLOW_ADMIN_PASSWORD"]),
        timeout=30,
    )
    assert put.status_code == 200, put.text

    # ... and the stack refuses the changed version wherever it would load it.
    stack.use_mlflow_as_admin(monkeypatch)
    try:
        MlflowClient().set_registered_model_alias(MODEL, "champion", version.version)
        refused = wait_for_health(stack, lambda h: h["status"] == "refused")
        assert refused["version"] == champion and refused["refused"]["version"] == version.version
        assert "code/flows/features.py changed" in refused["refused"]["reason"]
        answer = requests.post(
            f"{stack.serving_url}/invocations",
            json={"dataframe_records": [ONE_TRIP]},
            auth=("mallory", mallory),
            timeout=30,
        )
        assert answer.status_code == 200 and answer.headers["x-model-version"] == champion
        scoring = wait_until_final(
            start_deployment("score/score", color="green", month="2021-02"), 300
        )
        assert scoring.type.value == "FAILED"
        assert "features.py changed" in scoring.message
        owned = stack.compose("exec", "-T", "worker", "test", "-e", "/tmp/owned", check=False)
        assert owned.returncode != 0  # the changed code never ran
    finally:
        MlflowClient().set_registered_model_alias(MODEL, "champion", champion)
    assert wait_for_health(stack, lambda h: h["status"] == "ok")["version"] == champion
