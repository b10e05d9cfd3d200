"""Every registered version scores every real TLC month, whichever month fixed its signature.

TLC stores zones as int64 in green 2021-01, 2021-02 and 2023-01 and as int32 from 2023-02 on.
On real MLflow, Prefect and S3 servers: champions validated in each year, and a version logged
with an int32 signature as versions were before the types were made canonical, score all five
months and are compared with each other by promotion across the years.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature

from flows.features import model_input_columns
from flows.logic.predictions import ScoredBy
from flows.logic.signature import predict_raw
from flows.pipelines.score import score
from flows.pipelines.train import train
from flows.resources.registry import promotion_record
from flows.resources.tlc_files import load_trips
from flows.steps.scoring import load_trusted, predict
from flows.steps.training import model_package
from tests.integration.params import QUICK
from tests.paths import TLC_DATA

pytestmark = [pytest.mark.integration, pytest.mark.flows]

MONTHS = ("2021-01", "2021-02", "2023-01", "2023-02", "2023-03")


def month(name: str) -> str:
    return str(TLC_DATA / f"green_tripdata_{name}.parquet")


def register_with_stored_types(name: str, version: str, val_month: str) -> str:
    """The model of ``version`` registered again with the signature inferred from the raw file
    as stored, as every version was logged before the types were made canonical."""
    uri = f"models:/{name}/{version}"
    raw = pd.read_parquet(month(val_month))
    example = raw[model_input_columns(raw)].head(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signature = infer_signature(example, np.ones(5))
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as staging:
        mlflow.xgboost.log_model(
            mlflow.xgboost.load_model(uri),
            name="model",
            signature=signature,
            code_paths=[str(model_package(Path(staging)))],  # the platform's own packaging
        )
        mlflow.log_metric("rmse", 5.0)
        mlflow.log_param("val_uri", month(val_month))
    return str(mlflow.register_model(f"runs:/{run.info.run_id}/model", name).version)


def input_types(name: str, version: str) -> dict[str, str]:
    schema = mlflow.models.get_model_info(f"models:/{name}/{version}").signature.inputs
    return {spec.name: spec.type.name for spec in schema.inputs}


def promotion_tags(name: str, version: str) -> dict[str, str]:
    return promotion_record(MlflowClient().get_model_version(name, version))


def test_champions_of_either_year_score_every_month_and_are_compared_across_years(flow_env):
    name = flow_env
    client = MlflowClient()
    trained_2021 = train(
        train_path=month("2021-01"), val_path=month("2021-02"), params=QUICK, promote=True
    )
    # Promotion scores the 2021 champion on 2023-02 (int32 zones in the file).
    trained_2023 = train(
        train_path=month("2023-01"), val_path=month("2023-02"), params=QUICK, promote=True
    )
    decision = promotion_tags(name, trained_2023.version)
    assert decision["compared_with"] == trained_2021.version and decision["champion_rmse"]
    canonical = {"lpep_pickup_datetime": "datetime", "PULocationID": "long"}
    for version in (trained_2021.version, trained_2023.version):
        assert input_types(name, version).items() >= canonical.items()
    stored_int32 = register_with_stored_types(name, trained_2023.version, "2023-02")
    assert input_types(name, stored_int32)["PULocationID"] == "integer"  # int32

    data = {m: load_trips(month(m)) for m in MONTHS}
    predicted: dict[tuple[str, str], np.ndarray] = {}
    for version in (trained_2021.version, trained_2023.version, stored_int32):
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")  # once per version
        for m, trips in data.items():
            # What scoring and promotion call: the version's columns, in its own types.
            inputs, minutes = predict_raw(model, trips.as_raw(), trips.source, f"v{version}")
            assert len(minutes) == trips.rows_kept, (version, m)
            assert inputs["PULocationID"].dtype == "int64"  # handed back as read, not as cast
            rmse = float(np.sqrt(((minutes - trips.trips["duration"]) ** 2).mean()))
            assert rmse < 8, (version, m)  # minutes: a real prediction on every month
            predicted[version, m] = np.asarray(minutes)
    for m in MONTHS:  # the same model behind either signature predicts the same minutes
        np.testing.assert_allclose(
            predicted[stored_int32, m], predicted[trained_2023.version, m], rtol=1e-6
        )

    # The int32 champion scores a 2021 month as a flow run, and is judged by promotion on one.
    client.set_registered_model_alias(name, "champion", stored_int32)
    scored = score(path=month("2021-02"), monitor=False)
    assert scored.version == stored_int32 and scored.rows == data["2021-02"].rows_kept
    int32_version = ScoredBy(name, stored_int32, "")
    model = load_trusted.fn(int32_version)
    stored = predict.fn(int32_version, model, data["2021-01"])  # the scoring task
    assert stored["PULocationID"].dtype == "int64" and len(stored) == data["2021-01"].rows_kept
    retrained = train(
        train_path=month("2021-01"), val_path=month("2021-02"), params=QUICK, promote=True
    )
    decision = promotion_tags(name, retrained.version)
    assert decision["compared_with"] == stored_int32 and float(decision["champion_rmse"]) > 0
    assert retrained.champion == (decision["decision"] == "promoted")
