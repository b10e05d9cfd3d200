"""The metrics' labels stay bounded, and the platform's collector survives a source down."""

from __future__ import annotations

import pytest
from mlflow_platform_metrics import endpoint_of
from prometheus_client import CollectorRegistry, generate_latest

from services.exporter.collector import PlatformCollector, Sources, gauge

RUN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/api/2.0/mlflow/runs/create", "/api/2.0/mlflow/runs/create"),
        ("/ajax-api/2.0/mlflow/users/create", "/ajax-api/2.0/mlflow/users/create"),
        ("/api/3.0/mlflow/logged-models/m-" + "a" * 32, "/api/3.0/mlflow/logged-models/:id"),
        (f"/api/2.0/mlflow-artifacts/artifacts/1/{RUN}/artifacts/model/MLmodel",
         "/api/2.0/mlflow-artifacts/artifacts/*"),
        ("/api/2.0/mlflow-artifacts/mpu/create/1/x", "/api/2.0/mlflow-artifacts/mpu/*"),
        ("/static-files/static/js/main.123.js", "/static-files/*"),
        ("/health", "/health"),
        ("/invocations", "/invocations"),
        ("/api/2.0/platform/housekeeping/runs", "/api/2.0/platform/housekeeping/runs"),
        ("/wp-login.php", "other"),
        ("/api/2.0/mlflow/" + "x/" * 40 + "y", "other"),
        ("/" + "a" * 5000, "other"),
    ],
)  # fmt: skip
def test_endpoints_are_labelled_by_route(path, endpoint):
    assert endpoint_of(path) == endpoint


def test_a_source_that_fails_reports_down_and_the_others_still_answer():
    calls = {"good": 0}

    def good():
        calls["good"] += 1
        return [gauge("platform_champion_version", "v", ["model"], {("taxi",): 7.0})]

    def broken():
        raise ConnectionError("prefect-server: connection refused")

    sources = Sources("taxi", "pool", "taxi-scoring", "taxi-monitoring")
    collector = PlatformCollector(sources, cache_s=60, readers={"mlflow": good, "prefect": broken})
    registry = CollectorRegistry()
    registry.register(collector)
    page = generate_latest(registry).decode()
    assert 'platform_champion_version{model="taxi"} 7.0' in page
    assert 'platform_source_up{source="prefect"} 0.0' in page
    assert 'platform_source_up{source="mlflow"} 1.0' in page
    generate_latest(registry)
    assert calls["good"] == 1, "a second scrape within cache_s is answered from the cache"
