"""The tuning flow against real MLflow, Prefect and S3 servers (trials in this process)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from flows.errors import InvalidParameters
from flows.pipelines.tune import tune
from flows.resources.registry import promotion_record
from flows.steps.trials import tuning_split
from tests.paths import TLC_DATA

pytestmark = [pytest.mark.integration, pytest.mark.flows]

JAN, FEB = (str(TLC_DATA / f"green_tripdata_2021-0{m}.parquet") for m in (1, 2))


def test_tuning_leaves_a_parent_run_with_child_trials_and_a_challenger(flow_env, monkeypatch):
    name = flow_env
    # Deep trees can grow past the default size budget (20 MB); this test is about the search.
    monkeypatch.setenv("PROMOTION_MAX_MODEL_MB", "500")
    result = tune(train_path=JAN, val_path=FEB, trials=3, parallel=2, distribute=False)

    client = MlflowClient()
    parent = client.get_run(result.tuning_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_holdout_rmse"] == pytest.approx(result.best_holdout_rmse)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert sorted(c.data.tags["tuning.trial"] for c in children) == ["0", "1", "2"]
    assert all(c.info.status == "FINISHED" for c in children)
    best = min(children, key=lambda c: c.data.metrics["holdout_rmse"])
    assert best.data.metrics["holdout_rmse"] == pytest.approx(result.best_holdout_rmse)
    # Trials read only the training month; the validation month is promotion's alone.
    assert all("val_uri" not in c.data.params for c in children)
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots

    # The best parameters, trained and put through the promotion gate.
    trained = client.get_run(result.training.run_id)
    assert trained.data.tags["tuning.run_id"] == parent.info.run_id
    assert trained.data.params["max_depth"] == str(result.best_params["max_depth"])
    assert trained.data.params["val_uri"] == FEB
    version = client.get_model_version(name, result.training.version)
    assert promotion_record(version)["decision"] == "promoted"  # the first version


def test_trials_are_scored_on_the_latest_pickups_of_the_training_month():
    from flows.resources.tlc_files import load_trips

    trips = load_trips(JAN).trips
    fit, holdout = tuning_split(trips)
    assert len(holdout) == pytest.approx(0.2 * len(trips), abs=1)
    assert fit["pickup_datetime"].max() <= holdout["pickup_datetime"].min()


def test_nonsense_trial_counts_are_refused(flow_env):
    with pytest.raises(InvalidParameters, match="must be >= 1"):
        tune(train_path=JAN, val_path=FEB, trials=0)
