"""End to end: upload data, deploy, train on the worker, find the champion from the host."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from tests.paths import TLC_DATA

pytestmark = pytest.mark.e2e


def test_make_train_on_the_worker_produces_a_champion(stack, trained, monkeypatch):
    # `trained`: make upload-data, make deploy, make train, as a new user's first steps.
    report = dict(
        line.split(":", 1)
        for line in trained.splitlines()
        if line.startswith(("MLflow run", "rmse", "model", "champion"))
    )
    assert report["champion"].strip().startswith("yes (there is no champion yet)"), trained
    assert float(report["rmse"]) < 6.10
    assert f"{stack.mlflow_url}/#/experiments/" in report["MLflow run"]  # MLFLOW_UI_URL
    assert "Beginning flow run" in trained  # the flow run's logs were followed as they came

    # A teammate on the host, with nothing but the tracking URL, loads and uses the champion
    # `make train` made (by number: later tests move the alias to other versions).
    stack.use_mlflow_as_admin(monkeypatch)
    version = report["model"].rsplit("version", 1)[1].strip()
    champion = mlflow.pyfunc.load_model(f"models:/taxi-trip-duration/{version}")
    raw = pd.read_parquet(TLC_DATA / "green_tripdata_2021-02.parquet").head(20)
    minutes = champion.predict(raw[champion.metadata.get_input_schema().input_names()])
    assert len(minutes) == 20 and (minutes > 0).all()

    keys = stack.buckets("list")
    assert any(key.startswith("mlflow-artifacts/") and key.endswith("/MLmodel") for key in keys)
    assert any(key.endswith("plots/predicted_vs_actual.png") for key in keys)
