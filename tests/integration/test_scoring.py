"""The scoring flow against real MLflow, Prefect and S3 servers."""

from __future__ import annotations

import io

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.errors import MissingModel
from flows.pipelines.score import score
from tests.paths import TLC_DATA

pytestmark = [pytest.mark.integration, pytest.mark.flows]

JAN, FEB = (str(TLC_DATA / f"green_tripdata_2021-0{m}.parquet") for m in (1, 2))
FEB_PREFIX = "predictions/color=green/year=2021/month=02/"


def stored(s3, bucket: str, prefix: str) -> dict[str, pd.DataFrame]:
    """Every Parquet object under ``prefix``, read back."""
    client = s3.client()
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"]: pd.read_parquet(
            io.BytesIO(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
        )
        for o in listed
    }


def test_scoring_a_month_writes_its_partition_with_the_champions_predictions(
    flow_env, champion, s3, tlc_site, monkeypatch
):
    name, bucket = flow_env, f"data-{flow_env}"
    monkeypatch.setenv("TLC_BASE_URL", tlc_site[0])
    trained = champion()

    # Read as training reads a month (fetched into the bucket); monitoring is test_monitoring.py's.
    result = score(month="2021-02", monitor=False)

    key = f"{FEB_PREFIX}{name}-v{trained.version}.parquet"
    assert result.output_uri == f"s3://{bucket}/{key}" and result.version == trained.version
    (frame,) = stored(s3, bucket, FEB_PREFIX).values()
    assert len(frame) == result.rows > 50_000
    assert (
        frame["ride_id"].is_unique
        and frame["ride_id"].str.startswith("green_tripdata_2021-02:").all()
    )
    assert set(frame["model_version"]) == {trained.version}
    assert set(frame["model_run_id"]) == {trained.run_id}
    # The stored predictions are the registered version's own, on the stored raw inputs.
    model = mlflow.pyfunc.load_model(f"models:/{name}/{trained.version}")
    inputs = frame[model.metadata.get_input_schema().input_names()]
    np.testing.assert_allclose(frame["predicted_duration"], model.predict(inputs), rtol=1e-6)
    # Ride ids point at the file's own rows.
    raw = pd.read_parquet(FEB)
    rows = frame["ride_id"].str.rsplit(":", n=1).str[1].astype(int).head(100)
    np.testing.assert_array_equal(
        raw["trip_distance"].iloc[rows].to_numpy(), frame["trip_distance"].head(100).to_numpy()
    )

    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["model_version"] == trained.version
    assert run.data.tags["output_uri"] == result.output_uri
    assert run.data.metrics["rows"] == len(frame)
    assert run.data.metrics["rmse"] == pytest.approx(result.rmse) and result.rmse < 7


def test_scoring_again_with_the_same_version_replaces_its_output(flow_env, champion, s3):
    bucket = f"data-{flow_env}"
    champion()
    first = score(path=FEB, monitor=False)
    second = score(path=FEB, monitor=False)
    assert first.output_uri == second.output_uri
    (frame,) = stored(s3, bucket, FEB_PREFIX).values()
    assert len(frame) == second.rows


def test_another_version_writes_beside_the_first(flow_env, champion, s3):
    bucket = f"data-{flow_env}"
    first = champion()
    second = champion(alias="challenger")  # not promoted
    score(path=FEB, monitor=False)
    score(path=FEB, alias="challenger", monitor=False)
    versions = {str(f["model_version"].iloc[0]) for f in stored(s3, bucket, FEB_PREFIX).values()}
    assert versions == {first.version, second.version}


def test_without_a_champion_scoring_fails_clearly_and_writes_nothing(flow_env, s3):
    name, bucket = flow_env, f"data-{flow_env}"
    with pytest.raises(MissingModel, match=f"model '{name}' has no 'champion' version"):
        score(path=FEB)
    assert stored(s3, bucket, "predictions/") == {}
    experiment = mlflow.get_experiment_by_name(f"{name}-scoring")
    assert experiment is None or mlflow.search_runs([experiment.experiment_id]).empty


def test_the_monthly_flow_scores_the_new_month_with_the_champion_before_training_on_it(
    flow_env, champion, s3, tlc_site, monkeypatch
):
    from datetime import UTC, datetime

    from flows.pipelines.monthly import monthly
    from services.serving.traffic import Answered, batch_frame

    name, bucket = flow_env, f"data-{flow_env}"
    monkeypatch.setenv("TLC_BASE_URL", tlc_site[0])
    crowned = champion()
    # What the model server answered with the champion last month (services/serving/traffic.py).
    trips = pd.read_parquet(TLC_DATA / "green_tripdata_2021-02.parquet").head(500)
    served_at = datetime(2021, 2, 20, tzinfo=UTC)
    answers = [
        Answered(
            served_at,
            name,
            crowned.version,
            {**trip, "lpep_pickup_datetime": str(trip["lpep_pickup_datetime"])},
            12.0,
        )
        for trip in trips[
            ["lpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]
        ].to_dict("records")
    ]
    served = io.BytesIO()
    batch_frame(answers).to_parquet(served, index=False)
    key = f"served/year=2021/month=02/{name}-v{crowned.version}-20210220T000000Z-abcdef.parquet"
    s3.client().put_object(Bucket=bucket, Key=key, Body=served.getvalue())

    result = monthly(today="2021-03")  # the newest month on the (local) TLC site: 2021-02

    (frame,) = stored(s3, bucket, FEB_PREFIX).values()
    assert set(frame["model_version"]) == {crowned.version}  # judged before any new model
    assert int(result.version) > int(crowned.version)
    run = MlflowClient().get_run(result.run_id)
    assert run.data.params["val_uri"].endswith("green_tripdata_2021-02.parquet")
    assert run.data.params["train_uri"].endswith("green_tripdata_2021-01.parquet")
    assert mlflow.get_experiment_by_name(f"{name}-scoring") is not None
    monitoring = mlflow.get_experiment_by_name(f"{name}-monitoring")
    judged = MlflowClient().search_runs(
        [monitoring.experiment_id], filter_string="tags.source = 'served'"
    )
    assert [(r.data.tags["month"], int(r.data.metrics["rows"])) for r in judged] == [
        ("2021-02", 500)
    ]


def test_the_monthly_flow_stops_at_once_when_no_month_is_published(flow_env, tlc_site, monkeypatch):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.errors import NothingPublished
    from flows.pipelines.monthly import monthly

    monkeypatch.setenv("TLC_BASE_URL", tlc_site[0])  # holds 2021 and 2023 months only
    state = monthly(today="2020-06", return_state=True)

    with pytest.raises(NothingPublished, match="no green month published in the 8 months before"):
        state.result()

    async def task_runs():
        async with get_client() as client:
            ids = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            return await client.read_task_runs(flow_run_filter=ids)

    (looked_up,) = asyncio.run(task_runs())
    assert looked_up.run_count == 1  # bad input: not retried
