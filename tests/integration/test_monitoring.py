"""Monitoring against real MLflow, Prefect and S3 servers, on real TLC months."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from flows.errors import MissingModel
from flows.logic.months import month_index
from flows.pipelines.monitor import monitor
from flows.pipelines.retrain import retrain
from flows.pipelines.train import train
from flows.steps.training import model_package
from tests.corpus import slower_traffic
from tests.integration.params import QUICK, WEAK
from tests.paths import TLC_DATA

pytestmark = [pytest.mark.integration, pytest.mark.flows]

JAN, FEB = (str(TLC_DATA / f"green_tripdata_2021-0{m}.parquet") for m in (1, 2))


def test_a_normal_month_logs_a_monitoring_run_and_no_breach(flow_env, champion):
    name = flow_env
    trained = champion()
    result = monitor(path=FEB)

    assert result.version == trained.version and result.month == "2021-02"
    assert not result.breached and not result.retrain_requested
    assert abs(result.rmse_increase) < 0.02  # the validation month itself
    assert result.months_watched == ["2021-02"]
    run = MlflowClient().get_run(result.run_id)
    assert run.data.tags["model_version"] == trained.version
    assert run.data.tags["breached"] == "false"
    history = MlflowClient().get_metric_history(result.run_id, "rmse")
    assert [m.step for m in history] == [month_index("2021-02")]
    assert {"drift_share", "rmse_increase", "mae"} <= set(run.data.metrics)
    page = mlflow.artifacts.load_text(f"runs:/{result.run_id}/report.html")
    assert "<html" in page.lower() and len(page) > 100_000  # Evidently's full report
    assert mlflow.get_experiment_by_name(f"{name}-monitoring") is not None


def test_a_drifted_month_breaches_once_per_month_and_version(flow_env, champion, tmp_path):
    name = flow_env
    trained = champion()
    drifted = str(slower_traffic(tmp_path))

    first = monitor(path=drifted)
    assert first.breached and first.retrain_requested
    assert first.month == "2021-03" and first.rmse_increase > 0.3
    assert f"{name} v{trained.version} on 2021-03: rmse" in first.reason
    version = MlflowClient().get_model_version(name, trained.version)
    assert version.tags["monitoring.breach.2021-03"] == first.reason

    again = monitor(path=drifted)  # the same month and version: no second retraining
    assert again.breached and not again.retrain_requested
    assert again.months_watched == ["2021-03"]


def test_scoring_a_month_monitors_it(flow_env, champion):
    champion()
    from flows.pipelines.score import score

    scored = score(path=FEB)
    assert scored.monitoring.breached is False
    run = MlflowClient().get_run(scored.monitoring.run_id)
    assert run.data.tags["month"] == "2021-02"


def test_retraining_trains_on_the_month_before_validates_on_the_breached_one_once(
    flow_env, tlc_site, monkeypatch
):
    # The breach names the model (the platform's: no flow works on another) and its version.
    name = flow_env
    monkeypatch.setenv("TLC_BASE_URL", tlc_site[0])
    weak = train(train_path=JAN, val_path=FEB, model_name=name, params=WEAK, promote=True)

    result = retrain(
        color="green", month="2021-02", model_name=name, version=weak.version, reason="test"
    ).training

    assert result.model_name == name and result.champion is True  # beaten on that month
    assert MlflowClient().get_model_version_by_alias(name, "champion").version == result.version
    run = MlflowClient().get_run(result.run_id)
    assert run.data.params["train_uri"].endswith("green_tripdata_2021-01.parquet")
    assert run.data.params["val_uri"].endswith("green_tripdata_2021-02.parquet")
    tags = MlflowClient().get_model_version(name, weak.version).tags
    assert tags["monitoring.retrained.2021-02"] == result.version
    again = retrain(color="green", month="2021-02", model_name=name, version=weak.version)
    assert again.skipped and again.already_retrained_as == result.version


def test_a_version_without_a_reference_is_scored_but_not_monitored(flow_env):
    """As a champion trained before monitoring existed: scoring works, monitoring says why not."""
    from flows.pipelines.score import score

    name = flow_env
    trained = train(train_path=JAN, val_path=FEB, promote=True, params=QUICK)
    uri = f"models:/{name}/{trained.version}"
    with (
        mlflow.start_run() as run,
        tempfile.TemporaryDirectory() as staging,
    ):  # the same model, logged without a reference
        mlflow.xgboost.log_model(
            mlflow.xgboost.load_model(uri),
            name="model",
            signature=mlflow.models.get_model_info(uri).signature,
            code_paths=[str(model_package(Path(staging)))],  # the platform's own packaging
        )
        mlflow.log_metric("rmse", 5.0)
    old = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    MlflowClient().set_registered_model_alias(name, "champion", old.version)

    scored = score(path=FEB)
    assert scored.version == old.version and scored.rows > 50_000
    assert scored.monitoring is None and scored.not_monitored == "no reference"
    with pytest.raises(MissingModel, match="has no reference/reference.parquet"):
        monitor(path=FEB)
