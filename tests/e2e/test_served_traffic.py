"""What the model server answers is kept and monitored: a burst of records from another era than
the answering version's training reaches the data bucket and breaches `make monitor SERVED=yes`
on drift, with its report in MLflow, and retrains nothing (its month has no trips yet)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import mlflow
import pandas as pd
import pytest
import requests

from tests.e2e.compose import MODEL
from tests.paths import TLC_DATA

pytestmark = pytest.mark.e2e

INPUTS = ["lpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]


def test_drifted_served_traffic_breaches_monitoring(stack, prefect, trained, admin):
    env = stack.env()
    auth = (env["MLFLOW_ADMIN_USERNAME"], env["MLFLOW_ADMIN_PASSWORD"])
    url = f"{stack.serving_url}/invocations"
    probe = requests.post(url, json={"dataframe_records": []}, auth=auth, timeout=30)
    version = (
        probe.headers.get("x-model-version")
        or admin.get_model_version_by_alias(MODEL, "champion").version
    )
    trained_on = admin.get_run(admin.get_model_version(MODEL, version).run_id).data.params
    # Another era than the version's training data: the zone mix changed from 2021 to 2023.
    other = "2021-02" if "2023" in trained_on.get("train_uri", "") else "2023-03"
    frame = pd.read_parquet(TLC_DATA / f"green_tripdata_{other}.parquet").head(2000)[INPUTS]
    sent = 0
    for start in range(0, len(frame), 200):
        split = frame.iloc[start : start + 200].astype({"lpep_pickup_datetime": str})
        body = {"dataframe_split": split.to_dict(orient="split")}
        body["dataframe_split"].pop("index")
        reply = requests.post(url, json=body, auth=auth, timeout=60)
        assert reply.status_code == 200 and reply.headers["x-model-version"] == version
        sent += 200
    time.sleep(12)  # two flushes (SERVING_TRAFFIC_FLUSH_SECONDS=5 in the e2e settings)

    month = datetime.now(UTC).strftime("%Y-%m")
    year, number = month.split("-")
    served = [k for k in stack.buckets("list") if f"/served/year={year}/month={number}/" in k]
    assert any(f"{MODEL}-v{version}-" in key for key in served), served

    out = stack.make("monitor", f"MONTH={month}", "SERVED=yes", f"VERSION={version}").stdout
    assert re.search(r"decision:\s+breach: .*of the monitored columns drifted", out), out
    runs = mlflow.search_runs(
        experiment_names=[f"{MODEL}-monitoring"],
        filter_string=f"tags.source = 'served' and tags.month = '{month}'",
        output_format="list",
    )
    assert runs and int(runs[0].data.metrics["rows"]) >= sent
    assert "report.html" in {a.path for a in admin.list_artifacts(runs[0].info.run_id)}
