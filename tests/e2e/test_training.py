"""End to end: upload data, deploy, train on the worker, find the champion from the host."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from tests.conftest import TLC_DATA

pytestmark = pytest.mark.e2e

MONTHS = ("2021-01", "2021-02")


def test_make_train_on_the_worker_produces_a_champion(stack, monkeypatch):
    files = " ".join(str(TLC_DATA / f"green_tripdata_{m}.parquet") for m in MONTHS)
    upload = stack.make("upload-data", f"FILES={files}")
    assert upload.stdout.count("-> s3://") == 2, upload.stdout
    stack.make("deploy")

    trained = stack.make("train", f"TRAIN_MONTH={MONTHS[0]}", f"VAL_MONTH={MONTHS[1]}")
    report = dict(
        line.split(":", 1)
        for line in trained.stdout.splitlines()
        if line.startswith(("MLflow run", "rmse", "model", "champion"))
    )
    assert report["champion"].strip() == "yes", trained.stdout
    assert float(report["rmse"]) < 6.10
    assert f"{stack.mlflow_url}/#/experiments/" in report["MLflow run"]  # MLFLOW_UI_URL

    # A teammate on the host, with nothing but the tracking URL, loads and uses the champion.
    stack.use_mlflow_as_admin(monkeypatch)
    champion = mlflow.pyfunc.load_model("models:/taxi-trip-duration@champion")
    raw = pd.read_parquet(TLC_DATA / "green_tripdata_2021-02.parquet").head(20)
    minutes = champion.predict(raw[champion.metadata.get_input_schema().input_names()])
    assert len(minutes) == 20 and (minutes > 0).all()

    keys = json.loads(
        stack.exec_python(
            "mlflow",
            (
                "import boto3, os, json;"
                "s3 = boto3.client('s3', endpoint_url=os.environ['S3_ENDPOINT_URL']);"
                "pages = s3.get_paginator('list_objects_v2').paginate(Bucket='mlflow-artifacts');"
                "print(json.dumps([o['Key'] for p in pages for o in p.get('Contents', [])]))"
            ),
        )
    )
    assert any(key.endswith("/MLmodel") for key in keys)
    assert any(key.endswith("plots/predicted_vs_actual.png") for key in keys)
