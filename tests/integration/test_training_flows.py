"""The training and promotion flows against real MLflow, Prefect and S3 servers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from platform_names import CHALLENGER
from prefect.client.orchestration import get_client

from flows.errors import InvalidParameters, NotPromotable, TripDataError
from flows.pipelines.promote import promote
from flows.pipelines.train import train
from flows.resources.registry import promotion_record
from tests.integration.params import QUICK, WEAK
from tests.paths import TLC_DATA

pytestmark = [pytest.mark.integration, pytest.mark.flows]

JAN, FEB = (str(TLC_DATA / f"green_tripdata_2021-0{m}.parquet") for m in (1, 2))


def test_train_logs_registers_and_serves_from_raw_records(flow_env):
    name = flow_env
    result = train(train_path=JAN, val_path=FEB, params=QUICK)
    client = MlflowClient()
    run = client.get_run(result.run_id)

    assert result.rmse < 6.10 and run.data.metrics["rmse"] == pytest.approx(result.rmse)
    assert {"mae", "r2", "training_rows_kept", "validation_rows_kept"} <= set(run.data.metrics)
    assert run.data.params["train_uri"] == JAN and run.data.params["val_uri"] == FEB
    assert run.data.tags["prefect.flow_run_id"]
    sources = {json.loads(i.dataset.source)["uri"] for i in run.inputs.dataset_inputs}
    assert sources == {JAN, FEB}
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert plots == {
        "plots/feature_importance.png",
        "plots/predicted_vs_actual.png",
        "plots/residuals_by_duration.png",
    }

    version = client.get_model_version_by_alias(name, "challenger")
    assert version.version == result.version and version.run_id == result.run_id

    raw = pd.read_parquet(FEB).head(50)  # straight from the file: no preprocessing here
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@challenger")
    booster_model = mlflow.xgboost.load_model(f"models:/{name}@challenger")
    inputs = pyfunc.metadata.get_input_schema().input_names()
    from_pyfunc = pyfunc.predict(raw[inputs])
    assert np.all((from_pyfunc > 0) & (from_pyfunc < 90))
    np.testing.assert_allclose(from_pyfunc, booster_model.predict(raw), rtol=1e-6)

    # A process that has never seen this checkout loads it from the code logged with it alone.
    load_elsewhere = (
        "import mlflow, pandas as pd, sys; "
        "assert 'flows' not in sys.modules; "
        f"m = mlflow.pyfunc.load_model('models:/{name}@challenger'); "
        f"print(m.predict(pd.read_parquet({FEB!r}).head(3)[m.metadata.get_input_schema().input_names()]).tolist())"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    elsewhere = subprocess.run(
        [sys.executable, "-c", load_elsewhere], cwd="/", env=env, text=True, capture_output=True
    )
    assert elsewhere.returncode == 0, elsewhere.stderr[-2000:]
    assert json.loads(elsewhere.stdout.strip().splitlines()[-1]) == pytest.approx(
        from_pyfunc[:3].tolist(), rel=1e-6
    )
    code = {a.path for a in client.list_artifacts(result.run_id, "model/code/flows")}
    assert code == {f"model/code/flows/{m}" for m in ("__init__.py", "model.py", "features.py")}


def test_out_of_range_params_are_refused_before_any_fetch_or_fit(flow_env, tlc_site):
    url, hits = tlc_site
    hits.clear()
    with pytest.raises(InvalidParameters, match="n_estimators=100000000 must be a whole number"):
        train(
            train_path=f"{url}/green_tripdata_2021-01.parquet",
            val_path=f"{url}/green_tripdata_2021-02.parquet",
            params={"n_estimators": 10**8},
        )
    assert hits == []  # nothing fetched
    assert mlflow.get_experiment_by_name(flow_env) is None  # no run, nothing registered


@pytest.mark.parametrize(
    "given",
    [
        "/etc/hostname",
        f"{TLC_DATA}/../../../../etc/hostname",
        "s3://mlflow-artifacts/0/x.parquet",
        "SITE",
    ],
    ids=["local-file", "dot-dot", "another-bucket", "internal-url"],
)
def test_paths_outside_the_data_store_are_refused_before_any_fetch(flow_env, tlc_site, given):
    url, hits = tlc_site  # TLC_BASE_URL is TLC's own: this site is just some internal server
    hits.clear()
    given = f"{url}/green_tripdata_2021-01.parquet" if given == "SITE" else given
    with pytest.raises(InvalidParameters, match="train_path .* is outside the data store"):
        train(train_path=given, val_path=FEB, params=QUICK)
    assert hits == []  # nothing fetched
    assert mlflow.get_experiment_by_name(flow_env) is None  # no run, nothing registered


def test_a_file_larger_than_a_tlc_month_is_refused_before_it_is_decoded(flow_env, monkeypatch):
    monkeypatch.setenv("TRIP_FILE_MAX_ROWS", "1000")
    with pytest.raises(TripDataError, match="76518 rows, more than TRIP_FILE_MAX_ROWS"):
        train(train_path=JAN, val_path=FEB, params=QUICK, promote=True)
    assert MlflowClient().search_registered_models(f"name='{flow_env}'") == []


def test_only_the_platforms_model_is_trained_or_scored(flow_env):
    with pytest.raises(InvalidParameters, match="model_name 'someone-elses'"):
        train(train_path=JAN, val_path=FEB, model_name="someone-elses")
    assert mlflow.get_experiment_by_name(flow_env) is None


def test_flow_run_leaves_a_report_linking_to_mlflow(flow_env):
    result = train(train_path=JAN, val_path=FEB, params=QUICK)

    async def report_for(run_id):
        async with get_client() as client:
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["train-report"]))
            )
            return [a.data for a in found if run_id in (a.data or "")]

    reports = asyncio.run(report_for(result.run_id))
    assert len(reports) == 1 and "| rmse (min) |" in reports[0]


def test_promotion_both_ways(flow_env, champion):
    """The first version becomes champion; a better one replaces it; a worse one does not. One
    real training with promotion; the rest are copies of the session's trainings."""
    name = flow_env
    client = MlflowClient()
    weak = train(train_path=JAN, val_path=FEB, params=WEAK, promote=True)
    assert weak.champion is True and "no champion" in weak.promotion.reason

    strong = champion(alias=CHALLENGER)
    assert promote().promoted
    assert client.get_model_version_by_alias(name, "champion").version == strong.version
    archived = client.get_model_version(name, weak.version)
    assert archived.tags["stage"] == "archived" and not archived.aliases

    worse = champion(alias=CHALLENGER, weak=True)
    assert not promote().promoted
    assert client.get_model_version_by_alias(name, "champion").version == strong.version
    rejected = client.get_model_version(name, worse.version)
    # One line on the version; every number and budget of the gate in its training run.
    assert rejected.tags["promotion"].startswith("rejected: ")
    assert not [key for key in rejected.tags if key.startswith("promotion.")]
    numbers = promotion_record(rejected)
    assert numbers["decision"] == "rejected"
    assert numbers["compared_with"] == strong.version
    assert numbers["failed"] == "rmse"
    for side in ("challenger", "champion"):
        for metric in ("rmse", "p95_latency_ms", "model_size_mb"):
            assert float(numbers[f"{side}_{metric}"]) > 0
    assert float(numbers["budget_max_p95_latency_ms"]) == 60000  # flow_env

    champion_model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    raw = pd.read_parquet(FEB).head(10)
    inputs = champion_model.metadata.get_input_schema().input_names()
    assert len(champion_model.predict(raw[inputs])) == 10


def test_a_challenger_over_a_budget_is_refused_naming_it(flow_env, champion, monkeypatch):
    name = flow_env
    weak = champion(weak=True)
    strong = champion(alias=CHALLENGER)
    monkeypatch.setenv("PROMOTION_MAX_P95_LATENCY_MS", "0.001")
    decision = promote()
    assert decision.promoted is False
    assert "p95 latency" in decision.reason
    assert "over the budget of 0.001 ms" in decision.reason
    assert MlflowClient().get_model_version_by_alias(name, "champion").version == weak.version
    refused = MlflowClient().get_model_version(name, strong.version)
    assert promotion_record(refused)["failed"] == "p95_latency_ms"
    assert "Not promoted: p95 latency" in refused.description


def test_promotion_compares_on_an_explicit_month(flow_env, champion):
    champion()
    challenger = champion(alias=CHALLENGER)
    decision = promote(val_path=str(TLC_DATA / "green_tripdata_2023-01.parquet"))
    assert decision.challenger_version == challenger.version
    assert decision.val_uri.endswith("green_tripdata_2023-01.parquet")
    assert decision.champion_rmse is not None
    assert "trained on this data" not in decision.reason


def test_promotion_warns_when_a_model_was_trained_on_the_validation_month(flow_env, champion):
    first = champion()  # trained on January
    # Trained on February, validated on January: the promotion's default month is January.
    champion(alias=CHALLENGER, params={"train_uri": FEB, "val_uri": JAN})
    decision = promote()
    assert f"warning: v{first.version} trained on this data" in decision.reason


def test_failed_run_is_never_promoted(flow_env, champion):
    name = flow_env
    good = champion()
    client = MlflowClient()
    # A version whose run failed: registered by hand, as a broken pipeline might leave it.
    with mlflow.start_run() as run:
        model = mlflow.xgboost.load_model(f"models:/{name}/{good.version}")
        mlflow.xgboost.log_model(model, name="model")
    client.set_terminated(run.info.run_id, "FAILED")
    bad = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    client.set_registered_model_alias(name, "challenger", bad.version)
    with pytest.raises(NotPromotable, match="FAILED"):
        promote()
    assert client.get_model_version_by_alias(name, "champion").version == good.version


def test_bad_data_stops_the_flow_before_anything_is_registered(flow_env, tmp_path):
    name = flow_env
    broken = tmp_path / "green_tripdata_2021-01.parquet"
    pd.read_parquet(JAN).drop(columns=["DOLocationID"]).to_parquet(broken)
    with pytest.raises(TripDataError, match=f"{broken}: missing required columns"):
        train(train_path=str(broken), val_path=FEB, promote=True)
    assert MlflowClient().search_registered_models(f"name='{name}'") == []
    experiment = mlflow.get_experiment_by_name(name)
    assert experiment is None or mlflow.search_runs([experiment.experiment_id]).empty


def test_months_are_fetched_once_into_the_bucket(flow_env, tlc_site, s3, monkeypatch):
    """First use downloads from the (local copy of the) TLC site; later runs read the bucket."""
    base_url, hits = tlc_site
    monkeypatch.setenv("TLC_BASE_URL", base_url)

    def fetched() -> int:
        """GETs of the two months since this test started (the site is shared by the session)."""
        return len([h for h in hits[before:] if h.endswith(("2021-01.parquet", "2021-02.parquet"))])

    before = len(hits)
    first = train(train_month="2021-01", val_month="2021-02", params=QUICK)
    assert fetched() == 2
    bucket = f"data-{flow_env}"
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {
        "tlc/green/green_tripdata_2021-01.parquet",
        "tlc/green/green_tripdata_2021-02.parquet",
    }
    second = train(train_month="2021-01", val_month="2021-02", params=QUICK)
    assert fetched() == 2
    assert MlflowClient().get_run(second.run_id).data.params["train_uri"] == (
        f"s3://{bucket}/tlc/green/green_tripdata_2021-01.parquet"
    )
    assert first.rmse == pytest.approx(second.rmse)


def test_unpublished_month_fails_clearly(flow_env, tlc_site, monkeypatch):
    monkeypatch.setenv("TLC_BASE_URL", tlc_site[0])
    with pytest.raises(TripDataError, match="green_tripdata_2030-01.parquet: not published"):
        train.with_options(retries=0)(train_month="2030-01", val_month="2021-02")


def test_a_missing_bucket_object_is_bad_input_not_an_outage(s3):
    """No retries for a key that is not there: the error names it at once."""
    from flows.resources.tlc_files import load_trips

    s3.client().create_bucket(Bucket="missing-objects")
    location = "s3://missing-objects/green_tripdata_2030-01.parquet"
    with pytest.raises(TripDataError, match=f"{location}: file not found"):
        load_trips(location, s3.client())
