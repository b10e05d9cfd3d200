"""Prometheus in the stack (the `metrics` profile): every target is up, its rules are loaded, and
after `make train`, a burst of model-server calls and `make score`, the README's queries return
what was sent."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.e2e.compose import MODEL

pytestmark = pytest.mark.e2e

JOBS = {"serving", "mlflow", "data-proxy", "platform", "prometheus"}
SERVED_200 = (
    'sum(platform_http_requests_total{service="serving",endpoint="/invocations",status="200"})'
)
ONE_TRIP = {
    "lpep_pickup_datetime": "2021-02-01 08:00:00",
    "PULocationID": 74,
    "DOLocationID": 75,
    "trip_distance": 1.2,
}


def query(stack, expression: str) -> list[dict[str, Any]]:
    """The result vector of an instant query."""
    answer = requests.get(
        f"{stack.prometheus_url}/api/v1/query", params={"query": expression}, timeout=30
    )
    answer.raise_for_status()
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def scalar(stack, expression: str) -> float | None:
    """The single value of a query (None when it has no sample)."""
    result = query(stack, expression)
    return float(result[0]["value"][1]) if result else None


def eventually(check: Callable[[], Any], timeout_s: float = 120) -> Any:
    """``check()``'s first truthy answer, trying every 3 s (scrapes come every 15-30 s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(3)


def test_every_target_is_up_and_the_rules_are_loaded(stack):
    def targets() -> dict[str, str] | None:
        answer = requests.get(f"{stack.prometheus_url}/api/v1/targets", timeout=30).json()
        health = {t["labels"]["job"]: t["health"] for t in answer["data"]["activeTargets"]}
        return health if set(health) == JOBS and set(health.values()) == {"up"} else None

    health = eventually(targets)
    assert health, requests.get(f"{stack.prometheus_url}/api/v1/targets", timeout=30).text
    assert {r["metric"]["job"] for r in query(stack, "up == 1")} == JOBS
    rules = requests.get(f"{stack.prometheus_url}/api/v1/rules", timeout=30).json()["data"]
    names = {rule["name"] for group in rules["groups"] for rule in group["rules"]}
    assert {"ModelServerErrors", "ModelServerSlow", "NoWorkerOnline", "FlowRunsLate"} <= names
    assert {"MonitoringBreach", "serving:latency_p95_seconds:5m"} <= names


def test_the_queries_count_the_calls_and_the_runs(stack, trained, admin):
    auth = (stack.env()["MLFLOW_ADMIN_USERNAME"], stack.env()["MLFLOW_ADMIN_PASSWORD"])
    champion = admin.get_model_version_by_alias(MODEL, "champion").version
    assert eventually(lambda: scalar(stack, f'platform_champion_version{{model="{MODEL}"}}')) == (
        float(champion)
    )
    body = {"dataframe_records": [ONE_TRIP]}
    for _ in range(3):  # the model server answers, so its series exist before the count
        requests.post(f"{stack.serving_url}/invocations", json=body, auth=auth, timeout=30)
    time.sleep(20)  # one scrape (15 s) after those
    before = eventually(lambda: scalar(stack, SERVED_200))
    assert before is not None
    sent = 40
    for _ in range(sent):
        answer = requests.post(f"{stack.serving_url}/invocations", json=body, auth=auth, timeout=30)
        assert answer.status_code == 200
    assert eventually(lambda: scalar(stack, SERVED_200) == before + sent), (
        scalar(stack, SERVED_200),
        before,
    )
    by_version = f'sum(serving_predictions_total{{version="{champion}",status="200"}})'
    assert scalar(stack, by_version) >= sent
    rate = eventually(lambda: scalar(stack, "sum(serving:request_rate:5m)"))
    assert rate and rate > 0
    p95 = eventually(lambda: scalar(stack, "serving:latency_p95_seconds:5m"))
    assert p95 is not None and 0 < p95 < 5

    scored = stack.make("score", "MONTH=2021-02").stdout
    rows = int(re.search(r"^rows:\s+(\d+)", scored, re.MULTILINE)[1])
    month = f'platform_scoring_rows{{month="2021-02",version="{champion}"}}'
    assert eventually(lambda: scalar(stack, month) == rows), scalar(stack, month)
    completed = 'platform_flow_runs{deployment="score",state="Completed"}'
    assert eventually(lambda: (scalar(stack, completed) or 0) >= 1)
    assert eventually(lambda: (scalar(stack, "sum(platform_workers_online)") or 0) >= 1)
    assert scalar(stack, 'platform_source_up{source="prefect-server"}') == 1.0
    assert (scalar(stack, 'count({__name__=~"prefect_server_.+"})') or 0) > 0
