"""The model server (services/serving) against a real MLflow server: it follows the alias."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from flows.pipelines.train import train
from tests import servers
from tests.conftest import PLATFORM_MODEL
from tests.integration.params import QUICK, WEAK
from tests.metrics import scrape, value
from tests.paths import REPO_ROOT, TLC_DATA

pytestmark = pytest.mark.integration

JAN, FEB = (str(TLC_DATA / f"green_tripdata_2021-0{m}.parquet") for m in (1, 2))
# Any credentials: the test MLflow server has no accounts; the compose stack's has (e2e tests).
AUTH = ("teammate", "password")


def records(count: int) -> pd.DataFrame:
    """Raw February records as a client sends them (the model's input columns)."""
    raw = pd.read_parquet(FEB).head(count)
    return raw[["lpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]]


def invocation(frame: pd.DataFrame) -> dict:
    """MLflow's scoring protocol: ``dataframe_split`` with ISO timestamps."""
    split = frame.astype({"lpep_pickup_datetime": str}).to_dict(orient="split")
    split.pop("index")
    return {"dataframe_split": split}


@dataclass(frozen=True)
class ModelServer:
    """A running model server: its URL (what ``str`` gives) and its metrics page."""

    url: str
    metrics_url: str

    def __str__(self) -> str:
        return self.url


@pytest.fixture
def model_server(flow_env, tracking, tmp_path) -> Iterator[ModelServer]:
    """`python -m services.serving` for the test's model, looking up the alias every second."""
    port, metrics_port = servers.free_port(), servers.free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking,
        "MODEL_NAME": flow_env,
        "SERVING_POLL_SECONDS": "1",
        "PYTHONPATH": str(REPO_ROOT),
        "METRICS_PORT": str(metrics_port),  # as in docker-compose.yml
    }
    process = servers.start_logged(
        [sys.executable, "-m", "services.serving", "--port", str(port)], env, tmp_path / "log"
    )
    url = f"http://127.0.0.1:{port}"
    servers.wait_for_http(f"{url}/ping", 120, lambda: process.poll() is None)
    yield ModelServer(url, f"http://127.0.0.1:{metrics_port}/metrics")
    servers.stop_process(process)


def wait_for_version(url: str, version: str, timeout_s: float = 30) -> requests.Response:
    """Call until the answer comes from ``version``."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = requests.post(f"{url}/invocations", json=invocation(records(1)), auth=AUTH)
        if answer.headers.get("x-model-version") == version or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def test_without_a_champion_it_is_healthy_and_says_so(model_server):
    assert requests.get(f"{model_server}/ping").status_code == 200
    answer = requests.post(f"{model_server}/invocations", json=invocation(records(1)), auth=AUTH)
    assert answer.status_code == 503
    assert answer.json()["error_code"] == "NO_CHAMPION"
    assert "has no 'champion' version yet" in answer.json()["message"]


def test_anonymous_calls_are_refused(model_server):
    answer = requests.post(f"{model_server}/invocations", json=invocation(records(1)))
    assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Basic")
    assert requests.get(f"{model_server}/version").status_code == 401


def test_requests_beyond_the_limits_or_unlike_trips_are_refused_in_one_line(flow_env, model_server):
    mlflow.MlflowClient().create_registered_model(flow_env)  # signed in: 200, not 404

    def post(body: bytes | dict) -> requests.Response:
        if isinstance(body, dict):
            return requests.post(f"{model_server}/invocations", json=body, auth=AUTH)
        headers = {"Content-Type": "application/json"}
        return requests.post(f"{model_server}/invocations", data=body, auth=AUTH, headers=headers)

    good = invocation(records(2))["dataframe_split"]
    zones = good["columns"].index("PULocationID"), good["columns"].index("trip_distance")

    def with_value(column: int, value) -> dict:
        rows = [list(row) for row in good["data"]]
        rows[1][column] = value
        return {"dataframe_split": {"columns": good["columns"], "data": rows}}

    junk = os.urandom(5 * 1024 * 1024)
    cases = {
        "too large": (post(junk), 413, "bodies are limited to 1048576 bytes"),
        "too many rows": (post(invocation(records(1001))), 400, "at most 1000 per request"),
        "zone": (post(with_value(zones[0], 999)), 400, "row 1: PULocationID 999 is not a TLC zone"),
        "distance": (post(with_value(zones[1], -5)), 400, "row 1: trip_distance -5 is not"),
        "not json": (post(b"\x00" * 100), 400, "the body is not JSON"),
    }
    for case, (answer, status, message) in cases.items():
        assert answer.status_code == status, (case, answer.text[:300])
        assert message in answer.json()["message"], (case, answer.text[:300])
        assert len(answer.content) < 300, case  # one line, never the request back


def test_it_answers_as_the_champion_and_switches_without_a_failed_request(flow_env, model_server):
    name = flow_env
    first = train(train_path=JAN, val_path=FEB, params=WEAK, promote=True)
    answer = wait_for_version(model_server, first.version)
    assert answer.status_code == 200 and answer.headers["x-model-name"] == name

    batch = records(20)
    served = requests.post(f"{model_server}/invocations", json=invocation(batch), auth=AUTH)
    model = mlflow.pyfunc.load_model(f"models:/{name}/{first.version}")
    np.testing.assert_allclose(served.json()["predictions"], model.predict(batch), rtol=1e-5)
    records_answer = requests.post(
        f"{model_server}/invocations",
        json={"dataframe_records": batch.astype({"lpep_pickup_datetime": str}).to_dict("records")},
        auth=AUTH,
    )
    assert records_answer.json() == served.json()

    # A client keeps calling while a better version is promoted.
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def keep_calling() -> None:
        while not stop.is_set():
            reply = requests.post(
                f"{model_server}/invocations", json=invocation(records(1)), auth=AUTH
            )
            seen.append((reply.status_code, reply.headers.get("x-model-version")))

    client = threading.Thread(target=keep_calling)
    client.start()
    try:
        second = train(train_path=JAN, val_path=FEB, promote=True, params=QUICK)
        assert second.champion is True
        promoted_at = time.monotonic()
        switched = wait_for_version(model_server, second.version)
        switch_s = time.monotonic() - promoted_at
    finally:
        stop.set()
        client.join()
    assert switched.headers["x-model-version"] == second.version and switch_s < 30
    assert {status for status, _ in seen} == {200}, "a request failed during the switch"
    assert {version for _, version in seen} <= {first.version, second.version}
    assert len(seen) > 10

    # Its metrics count exactly what it answered, by answering version.
    before = scrape(model_server.metrics_url)
    for rows in (1, 1, 1, 3, 5):
        answer = requests.post(
            f"{model_server}/invocations", json=invocation(records(rows)), auth=AUTH
        )
        assert answer.status_code == 200
    assert (
        requests.post(f"{model_server}/invocations", json=invocation(records(1))).status_code == 401
    )
    after = scrape(model_server.metrics_url)

    def added(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert added("serving_predictions_total", version=second.version, status="200") == 5
    assert added("serving_predicted_rows_total", version=second.version) == 11
    assert added("serving_signin_refusals_total", status="401") == 1
    served = {"service": "serving", "endpoint": "/invocations"}
    assert added("platform_http_requests_total", status="200", **served) == 5
    assert added("platform_http_requests_total", status="401", **served) == 1
    assert added("platform_http_request_duration_seconds_count", **served) == 6
    assert value(after, "serving_answering_version") == float(second.version)
    assert value(after, "serving_version_loads_total", outcome="loaded") == 2


def test_what_it_answers_is_logged_and_drifted_traffic_breaches_monitoring(
    flow_env, tracking, champion, accounts, s3, tmp_path, monkeypatch
):
    """Answered records go through a real data proxy (the model server's own account) into the
    data bucket's served/, and `monitor(served=True)` judges them against the version's reference:
    2023's zone mix drifts from the 2021 model's."""
    from flows.pipelines.monitor import monitor

    proxy, account = accounts.data_proxy, accounts.serving
    bucket = proxy.bucket  # the data bucket monitoring reads is the one the proxy writes into
    monkeypatch.setenv("DATA_BUCKET", bucket)
    # The data proxy takes answered records of the platform's model only.
    model = PLATFORM_MODEL
    monkeypatch.setenv("MODEL_NAME", model)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", f"{model}-{flow_env}")
    version = champion().version
    port = servers.free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking,
        "MODEL_NAME": model,
        "SERVING_POLL_SECONDS": "1",
        "PYTHONPATH": str(REPO_ROOT),
        "DATA_PROXY_URL": proxy.url,
        "MLFLOW_TRACKING_USERNAME": account[0],
        "MLFLOW_TRACKING_PASSWORD": account[1],
        "SERVING_TRAFFIC_FLUSH_SECONDS": "1",
    }
    process = servers.start_logged(
        [sys.executable, "-m", "services.serving", "--port", str(port)], env, tmp_path / "log"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        servers.wait_for_http(f"{url}/ping", 120, lambda: process.poll() is None)
        assert wait_for_version(url, version).status_code == 200
        drifted = pd.read_parquet(TLC_DATA / "green_tripdata_2023-03.parquet").head(1500)
        drifted = drifted[["lpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]]
        answered = []
        for start in range(0, len(drifted), 100):
            reply = requests.post(
                f"{url}/invocations", json=invocation(drifted.iloc[start : start + 100]), auth=AUTH
            )
            assert reply.status_code == 200
            answered += reply.json()["predictions"]

        def served_keys() -> list[str]:
            pages = (
                s3.client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix="served/")
            )
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
            return [key for key in keys if f"/{model}-v{version}-" in key]  # this test's only

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            frames = [
                pd.read_parquet(
                    io.BytesIO(s3.client().get_object(Bucket=bucket, Key=k)["Body"].read())
                )
                for k in served_keys()
            ]
            if sum(len(f) for f in frames) >= len(answered):
                break
            time.sleep(1)
        logged = pd.concat(frames, ignore_index=True)
    finally:
        servers.stop_process(process)
    # The warm-up calls of wait_for_version are logged too: February's first record.
    logged = logged[logged["PULocationID"].isin(drifted["PULocationID"])]
    assert len(logged) >= len(answered)
    assert (
        sorted(logged["predicted_duration"].round(4))[-5:]
        == sorted(round(p, 4) for p in answered)[-5:]
    )
    assert set(logged["model_version"]) == {version}
    assert not {"authorization", "password"} & {c.lower() for c in logged.columns}

    month = datetime.now(UTC).strftime("%Y-%m")
    result = monitor(month=month, served=True)
    assert result.breached and result.breached_metrics == ["drift_share"], result.reason
    assert result.rows >= 1500 and np.isnan(result.rmse)
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["source"] == "served" and run.data.tags["month"] == month
    assert "report.html" in {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id)}
