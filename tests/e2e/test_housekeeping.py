"""Housekeeping on the shared stack: `make housekeeping` deletes a deleted run's artifacts and
its logged model from MinIO and its rows from MLflow, reports sizes, and the champion serves on."""

from __future__ import annotations

import re
import secrets
import time

import mlflow
import numpy as np
import pytest
import requests
import xgboost as xgb

from tests.e2e.compose import MODEL

pytestmark = pytest.mark.e2e


def test_the_deployment_runs_daily_on_the_stacks_queue(stack, prefect, trained):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("housekeeping/housekeeping")
    assert deployment.work_queue_name == "in-stack"
    assert [s.schedule.cron for s in deployment.schedules if s.active] == ["40 3 * * *"]


def test_make_housekeeping_deletes_a_deleted_run_and_its_model_and_the_champion_serves_on(
    stack, prefect, trained, admin
):
    champion = admin.get_model_version_by_alias(MODEL, "champion")
    experiment = admin.create_experiment(f"scratch-{secrets.token_hex(4)}")
    rng = np.random.default_rng(0)
    booster = xgb.train({}, xgb.DMatrix(rng.random((40, 2)), rng.random(40)), num_boost_round=2)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_text("notes", "notes/a.txt")
        logged = mlflow.xgboost.log_model(booster, name="model", pip_requirements=["xgboost"])
    admin.delete_run(run.info.run_id)
    bucket = stack.env()["MLFLOW_ARTIFACT_BUCKET"]
    ours = (f"{bucket}/{experiment}/{run.info.run_id}/", f"{bucket}/{experiment}/models/")
    before = [key for key in stack.buckets("list") if key.startswith(ours)]
    assert any("/models/" in key for key in before) and any("notes/a.txt" in k for k in before)

    dry = stack.make("housekeeping", "RETENTION_DAYS=0", "DRY_RUN=yes").stdout
    assert "Housekeeping (dry run)" in dry, dry
    assert [key for key in stack.buckets("list") if key.startswith(ours)] == before

    report = stack.make("housekeeping", "RETENTION_DAYS=0").stdout
    deleted = re.search(r"MLflow: deleted (\d+) deleted runs and (\d+) logged models", report)
    assert deleted and int(deleted[1]) >= 1 and int(deleted[2]) >= 1, report
    assert re.search(r"\| database mlflow \| [\d.]+ \w?B \|", report), report
    assert re.search(rf"\| bucket {bucket} \|", report), report
    assert [key for key in stack.buckets("list") if key.startswith(ours)] == []
    with pytest.raises(mlflow.exceptions.MlflowException):
        admin.get_run(run.info.run_id)
    with pytest.raises(mlflow.exceptions.MlflowException):
        admin.get_logged_model(logged.model_id)

    # What the champion needs is all there: it loads, and the model server answers as it.
    assert admin.get_model_version_by_alias(MODEL, "champion").version == champion.version
    loaded = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    assert loaded.metadata.run_id == champion.run_id
    deadline, health = time.monotonic() + 60, {}
    while time.monotonic() < deadline:  # it may still be loading after an earlier test's restart
        health = requests.get(f"{stack.serving_url}/health", timeout=30).json()
        if health.get("status") == "ok":
            break
        time.sleep(2)
    assert health["status"] == "ok" and str(health["version"]) == champion.version, health
